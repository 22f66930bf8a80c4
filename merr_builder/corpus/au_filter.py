"""The paper's AU filter: which clips enter the coarse set.

MERR kept, of 73,148 clips, the 28,618 whose peak-frame AU combination matched an emotion. A clip here
that has no given label and whose peak matches no label's AU prototype leaves the build with the reason
`no_au_match`, its prototype scores in the message, so a user can find and count it (quarantine table,
funnel, gallery). With `annotate.au_filter` off it stays, labelled neutral (the behaviour before the
filter). With `annotate.require_label_agreement` a pseudo-labelled clip also leaves when the facial
expression classifier names another label (`label_disagreement`). A given label is never filtered here:
the coarse step checks it against the AU evidence and the fine step leaves out those that disagree.
"""

from __future__ import annotations

from merr_builder.corpus.base import StepContext, StepDefaults, output_schema
from merr_builder.faces.expression import nearest_miss
from merr_builder.facs import AU_NAMES
from merr_builder.quarantine import ErrorKind, QuarantineRecord, StageResult


def _scores(row: dict) -> str:
    scores = dict(row.get("prototype_scores") or {})
    ranked = sorted(scores.items(), key=lambda item: -item[1])[:3]
    return ", ".join(f"{label} {score:.2f}" for label, score in ranked)


class AUFilterStep(StepDefaults):
    name = "au_filter"
    version = "2"  # 2: the message says what the peak showed and what the nearest prototype lacks
    scope = "partition"
    drops = True  # later steps see only the clips it keeps
    config_section = "annotate"
    settings = ("au_filter", "require_label_agreement")
    reads = {
        "ingest": ("source_path", "label"),
        "faces": ("aus_peak", "au_match", "pseudo_label", "prototype_scores", "classifier_label", "label_agreement"),
    }
    writes: tuple[str, ...] = ()
    output_schema = output_schema(name, writes)

    def __init__(self, config) -> None:
        self.config = config.annotate

    @classmethod
    def from_config(cls, config) -> "AUFilterStep":
        return cls(config)

    def run(self, rows: list[dict], context: StepContext) -> StageResult[dict]:
        result: StageResult[dict] = StageResult()
        for row in rows:
            drop = self._drop(row)
            if drop is None:
                result.outputs.append({"clip_id": row["clip_id"]})
            else:
                kind, message = drop
                result.quarantined.append(QuarantineRecord(row["clip_id"], row["source_path"], self.name, kind, message))
        return result

    def _drop(self, row: dict) -> tuple[str, str] | None:
        if row.get("label"):
            return None
        if self.config.au_filter and row.get("au_match") is False:
            aus = row.get("aus_peak")
            evidence = f"; {nearest_miss([aus[au] for au in AU_NAMES])}" if aus else ""
            return ErrorKind.NO_AU_MATCH, f"the peak frame's AUs match no label's prototype (best: {_scores(row) or 'none'}{evidence})"
        if self.config.require_label_agreement and row.get("label_agreement") is False:
            return ErrorKind.LABEL_DISAGREEMENT, (
                f"AU pseudo-label {row.get('pseudo_label')} but the expression classifier says "
                f"{row.get('classifier_label') or 'disgust'} ({_scores(row)})"
            )
        return None
