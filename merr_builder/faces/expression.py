"""From AU intensities to MERR's words: the visual expression description and the AU pseudo-label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merr_builder.facs import AU_NAMES, AU_PHRASES, AU_PRESENCE_THRESHOLD, EMOTION_PROTOTYPES

# An AU at this intensity counts fully towards a prototype (OpenFace's "marked" level); weaker ones count
# in proportion.
PROTOTYPE_FULL_INTENSITY = 2.0
# Share of the score from the core AUs; the supporting AUs give the rest.
CORE_WEIGHT = 0.7
# A prototype whose core is present scores at least CORE_WEIGHT / 2; below this it is not matched (only
# a contradicting AU takes it there).
MATCH_MIN = 0.35
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
    label: str  # "neutral" when no prototype is matched
    score: float  # 0-1: how fully the peak AUs show the label's prototype (for neutral: 1 - best other)
    scores: dict[str, float]  # every prototype's score
    matched: tuple[str, ...]  # the AUs of the label's prototype present at the peak

    @property
    def au_match(self) -> bool:
        return self.label != "neutral"


def _strength(value: float) -> float:
    return min(max(value, 0.0) / PROTOTYPE_FULL_INTENSITY, 1.0)


def prototype_scores(aus) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """label → 0-1: 0 unless every core group has a present AU; then core and support strength, lowered by
    the strongest contradicting AU (one at full intensity leaves nothing)."""
    value = dict(zip(AU_NAMES, (float(v) for v in aus)))
    scores = {}
    for label, proto in EMOTION_PROTOTYPES.items():
        core = [max(value[au] for au in group) for group in proto.core]
        if min(core) < AU_PRESENCE_THRESHOLD:
            scores[label] = 0.0
            continue
        core_part = float(np.mean([_strength(v) for v in core]))
        support_part = float(np.mean([_strength(value[au]) for au in proto.support])) if proto.support else core_part
        against = max((_strength(value[au]) for au in proto.contradicts), default=0.0)
        scores[label] = round((CORE_WEIGHT * core_part + (1 - CORE_WEIGHT) * support_part) * (1.0 - against), 4)
    return scores


def nearest_miss(aus) -> str:
    """For a peak that matches no prototype: the AUs present and what the nearest prototype (most core
    groups present) lacks, e.g. "present: AU01 1.8, AU26 1.2; nearest: surprise, lacks AU02"."""
    value = dict(zip(AU_NAMES, (float(v) for v in aus)))
    shown = ", ".join(f"{au} {value[au]:.1f}" for au in present_aus(np.asarray(aus, dtype=np.float64))) or "none"

    def lacking(label: str) -> list[tuple[str, ...]]:
        return [g for g in EMOTION_PROTOTYPES[label].core if max(value[au] for au in g) < AU_PRESENCE_THRESHOLD]

    nearest = min(EMOTION_PROTOTYPES, key=lambda label: len(lacking(label)) / len(EMOTION_PROTOTYPES[label].core))
    missing = " and ".join(" or ".join(group) for group in lacking(nearest)) or "nothing (a contradicting AU)"
    return f"present: {shown}; nearest: {nearest}, lacks {missing}"


def pseudo_label(aus) -> PseudoLabel:  # type: ignore[no-untyped-def]
    """The MERR label whose AU prototype the peak AUs match best; neutral when none is matched."""
    scores = prototype_scores(aus)
    # Ties go to the more specific prototype (more core groups), then to the table's order.
    order = {label: i for i, label in enumerate(EMOTION_PROTOTYPES)}
    best = max(scores, key=lambda lab: (scores[lab], len(EMOTION_PROTOTYPES[lab].core), -order[lab]))
    if scores[best] < MATCH_MIN:
        return PseudoLabel("neutral", round(1.0 - scores[best], 4), scores, ())
    proto = EMOTION_PROTOTYPES[best]
    value = dict(zip(AU_NAMES, (float(v) for v in aus)))
    units = [au for group in proto.core for au in group] + list(proto.support)
    return PseudoLabel(best, scores[best], scores, tuple(au for au in units if value[au] >= AU_PRESENCE_THRESHOLD))
