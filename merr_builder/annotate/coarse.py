"""Coarse-grained annotation: the paper's template sentence from the measured clues, and the label.

Label: a given label (label file, manifest, MER2023 labels) wins; otherwise the AU pseudo-label. The
authors kept a sample when its AU evidence agreed with its label (issue #12); here the agreement is
the label's AU-prototype score at the peak, and the outcome is recorded in `label_source`.
"""

from __future__ import annotations

from merr_builder.annotate.prompts import (
    COARSE_EXPRESSION_ONLY,
    COARSE_SILENT,
    COARSE_TEMPLATE,
    COARSE_TONELESS,
    COARSE_UNQUOTED,
)
from merr_builder.faces.expression import MATCH_MIN, NO_MOVEMENT, prototype_scores
from merr_builder.facs import AU_NAMES
from merr_builder.speech.subtitle import quotable, speaks
from merr_builder.speech.tone import NO_SPEECH


def _position(box: dict[str, float]) -> str:
    centre = box["x"] + box["w"] / 2
    return "on the left" if centre < 0.38 else "on the right" if centre > 0.62 else "in the centre"


def _framing(box: dict[str, float]) -> str:
    height = box["h"]
    return "a close-up" if height > 0.45 else "a medium shot" if height > 0.2 else "a wide shot"


def _gaze(pose: dict[str, float] | None) -> str:
    if not pose:
        return ""
    yaw, pitch = pose["yaw"], pose["pitch"]
    if pitch > 15:
        return ", head lowered"
    if abs(yaw) > 25:
        return ", head turned away from the camera"
    return ", facing the camera"


def objective_description(row: dict) -> str:
    """A plain factual sentence from what the build measured (no vision-language model): how many people,
    where the main face is and how it is framed, and where the head points. Recorded as measured facts in
    the provenance; a VLM backend can replace it."""
    n = row.get("n_faces") or 0
    others = n - 1
    people = "alone in the frame" if others <= 0 else "with another person in the frame" if others == 1 else f"with {others} other people in the frame"
    box = row.get("face_box_peak")
    if not box:
        return people
    return f"{people}, seen {_position(box)} in {_framing(box)}{_gaze(row.get('head_pose_peak'))}"


def _in_sentence(phrases: str) -> str:
    """MERR's capitalised AU phrases ("Eyes widened, Wide-mouthed") as words inside a sentence."""
    return ", ".join(p[:1].lower() + p[1:] if not p[1:2].isupper() else p for p in phrases.split(", "))


def coarse_caption(row: dict) -> str:
    """The paper's template sentence; its own forms where a clip is silent or its words are not quoted."""
    words = quotable(row)
    heard = (row.get("audio_tone_description") or NO_SPEECH) != NO_SPEECH
    if words:
        template = COARSE_TEMPLATE if heard else COARSE_TONELESS
    else:
        template = COARSE_UNQUOTED if heard else COARSE_EXPRESSION_ONLY if speaks(row) else COARSE_SILENT
    return template.format(
        visual_objective_description=row.get("visual_objective_description") or objective_description(row),
        visual_expression_description=_in_sentence(row.get("visual_expression_description") or NO_MOVEMENT),
        audio_tone_description=row.get("audio_tone_description"),
        subtitle=words,
    )


def resolve_label(row: dict) -> tuple[str | None, str]:
    """(label, label_source) for a row: the given label checked against the face, else the pseudo-label."""
    aus = row.get("aus_peak")
    if isinstance(row.get("label"), str) and row["label"]:
        if not aus:
            return row["label"], f"{row.get('label_source')} (no face evidence to check)"
        if row["label"] == "neutral":
            return row["label"], f"{row.get('label_source')} (neutral: no AU prototype to check)"
        score = prototype_scores([aus[au] for au in AU_NAMES]).get(row["label"], 0.0)
        verdict = "agrees with" if score >= MATCH_MIN else "disagrees with"  # its prototype is matched at the peak
        return row["label"], f"{row.get('label_source')} ({verdict} the AU evidence, score {score:.2f})"
    if row.get("pseudo_label"):
        if row.get("au_match") is False:
            return row["pseudo_label"], "AU pseudo-label (no prototype matched: neutral; the AU filter was off)"
        return row["pseudo_label"], f"AU pseudo-label (score {row.get('pseudo_label_score', 0):.2f})"
    return None, "no label: no label file and no face"
