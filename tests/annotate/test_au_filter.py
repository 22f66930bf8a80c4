"""The paper's AU filter: which clips enter the coarse set, and why the others left."""

from pathlib import Path

from merr_builder.config import load_config
from merr_builder.corpus.au_filter import AUFilterStep
from merr_builder.corpus.base import StepContext
from merr_builder.layout import BuildLayout
from merr_builder.quarantine import ErrorKind

ROWS = [
    {"clip_id": "a", "source_path": "/v/a.mp4", "label": None, "au_match": True, "pseudo_label": "happy",
     "prototype_scores": {"happy": 0.8}, "classifier_label": "happy", "label_agreement": True},
    {"clip_id": "b", "source_path": "/v/b.mp4", "label": None, "au_match": False, "pseudo_label": "neutral",
     "prototype_scores": {"happy": 0.0, "sad": 0.2}, "classifier_label": "sad", "label_agreement": False},
    {"clip_id": "c", "source_path": "/v/c.mp4", "label": "sad", "au_match": False, "pseudo_label": "neutral",
     "prototype_scores": {"sad": 0.0}, "classifier_label": "sad", "label_agreement": False},
    {"clip_id": "d", "source_path": "/v/d.mp4", "label": None, "au_match": True, "pseudo_label": "surprise",
     "prototype_scores": {"surprise": 0.6}, "classifier_label": "fear", "label_agreement": False},
]  # fmt: skip


def _run(tmp_path: Path, *overrides: str):
    step = AUFilterStep.from_config(load_config(None, list(overrides)))
    return step.run([dict(r) for r in ROWS], StepContext(BuildLayout(tmp_path)))


def test_unlabelled_clips_without_an_au_match_leave_with_their_scores(tmp_path):
    result = _run(tmp_path)
    assert [r["clip_id"] for r in result.outputs] == ["a", "c", "d"]  # a given label is never filtered here
    [dropped] = result.quarantined
    assert (dropped.clip_id, dropped.stage, dropped.error_kind) == ("b", "au_filter", ErrorKind.NO_AU_MATCH)
    assert dropped.source_path == "/v/b.mp4" and "sad 0.20" in dropped.message


def test_the_filter_off_keeps_them_as_before(tmp_path):
    result = _run(tmp_path, "annotate.au_filter=false")
    assert [r["clip_id"] for r in result.outputs] == ["a", "b", "c", "d"] and not result.quarantined


def test_agreement_with_the_classifier_can_be_required(tmp_path):
    result = _run(tmp_path, "annotate.require_label_agreement=true")
    assert [r["clip_id"] for r in result.outputs] == ["a", "c"]
    kinds = {q.clip_id: q.error_kind for q in result.quarantined}
    assert kinds == {"b": ErrorKind.NO_AU_MATCH, "d": ErrorKind.LABEL_DISAGREEMENT}
    assert "classifier says fear" in next(q.message for q in result.quarantined if q.clip_id == "d")


def test_the_message_says_what_the_peak_showed_and_what_the_nearest_prototype_lacks(tmp_path):
    from merr_builder.facs import AU_NAMES

    aus = dict.fromkeys(AU_NAMES, 0.0) | {"AU01": 1.8, "AU02": 1.4}  # raised brows, no wide eyes or open jaw
    row = dict(ROWS[1], aus_peak=aus)
    [dropped] = AUFilterStep.from_config(load_config(None, [])).run([row], StepContext(BuildLayout(tmp_path))).quarantined
    assert "present: AU01 1.8, AU02 1.4; nearest: surprise, lacks AU05 or AU26" in dropped.message
