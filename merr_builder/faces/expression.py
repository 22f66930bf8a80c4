"""From AU intensities to MERR's words: the visual expression description and the AU pseudo-label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merr_builder.facs import AU_NAMES, AU_PHRASES, AU_PRESENCE_THRESHOLD, EMOTION_PROTOTYPES

# An AU at this intensity counts fully towards a prototype (OpenFace's "marked" level); weaker ones count
# in proportion.
PROTOTYPE_FULL_INTENSITY = 2.0
# A prototype is a candidate only when at least this share of its AUs is present (MER-Factory's rule).
PROTOTYPE_MIN_PRESENT = 0.5
# Below this score no prototype is convincing and the label is neutral.
NEUTRAL_BELOW = 0.35
MAX_PHRASES = 4
NO_MOVEMENT = "no clear facial movement"


def present_aus(aus: np.ndarray) -> list[str]:
    """AUs at or above the presence threshold, strongest first."""
    order = np.argsort(-aus, kind="stable")
    return [AU_NAMES[i] for i in order if aus[i] >= AU_PRESENCE_THRESHOLD]


def describe_expression(aus: np.ndarray, exclude: tuple[str, ...] = ("AU45",)) -> str:
    """MERR-style phrases of the strongest present AUs, e.g. "Eyes widened, Wide-mouthed".

    Blinks (AU45) are left out by default: a blink is not an expression.
    """
    phrases = [AU_PHRASES[au] for au in present_aus(aus) if au not in exclude][:MAX_PHRASES]
    return ", ".join(phrases) if phrases else NO_MOVEMENT


@dataclass(frozen=True)
class PseudoLabel:
    label: str
    score: float  # 0-1: how fully the peak AUs show the label's prototype (for neutral: 1 - best other)
    scores: dict[str, float]  # every prototype's score


def prototype_scores(aus: np.ndarray) -> dict[str, float]:
    index = {au: i for i, au in enumerate(AU_NAMES)}
    scores = {}
    for label, (units, _) in EMOTION_PROTOTYPES.items():
        values = np.array([aus[index[u]] for u in units], dtype=np.float64)
        present = float(np.mean(values >= AU_PRESENCE_THRESHOLD))
        strength = float(np.mean(np.minimum(values / PROTOTYPE_FULL_INTENSITY, 1.0)))
        scores[label] = strength if present >= PROTOTYPE_MIN_PRESENT else 0.0
    return scores


def pseudo_label(aus: np.ndarray) -> PseudoLabel:
    """The MERR label whose AU prototype the peak AUs match best; neutral when none does."""
    scores = prototype_scores(aus)
    # Ties go to the more specific prototype (more AUs), then to the table's order.
    order = {label: i for i, label in enumerate(EMOTION_PROTOTYPES)}
    best = max(scores, key=lambda lab: (round(scores[lab], 6), len(EMOTION_PROTOTYPES[lab][0]), -order[lab]))
    if scores[best] < NEUTRAL_BELOW:
        return PseudoLabel("neutral", round(1.0 - scores[best], 4), scores)
    return PseudoLabel(best, round(scores[best], 4), scores)
