"""Coarse: the paper's template caption from the clues, and the label (given, checked, or pseudo-label)."""

from __future__ import annotations

from merr_builder.annotate.coarse import coarse_caption, resolve_label
from merr_builder.corpus.base import StepContext, StepDefaults, output_schema
from merr_builder.speech.subtitle import quote_cut


class CoarseStep(StepDefaults):  # no settings: the template and the agreement rule are code (annotate/)
    name = "coarse"
    version = "4"  # 2: prototypes with core AUs; the AU filter before it; 3: English quoted, doubtful speech not; 4: long quotes cut
    scope = "partition"
    reads = {
        "ingest": ("label", "label_source"),
        "faces": ("aus_peak", "visual_expression_description", "pseudo_label", "pseudo_label_score", "au_match"),
        "speech": ("transcript", "transcript_flags"),
        "tone": ("audio_tone_description",),
        "translate": ("transcript_en",),
        "objective": ("visual_objective_description",),
    }
    writes = ("coarse_caption", "label", "label_source", "subtitle_cut")
    output_schema = output_schema(name, writes)

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        out = []
        for row in rows:
            label, source = resolve_label(row)
            out.append({"clip_id": row["clip_id"], "coarse_caption": coarse_caption(row), "label": label, "label_source": source,
                        "subtitle_cut": quote_cut(row)})  # fmt: skip
        return out
