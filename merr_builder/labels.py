"""The MERR label set: the one definition every stage, exporter and the trainer use."""

from __future__ import annotations

# The nine MERR labels (Emotion-LLaMA paper; facts file §1.10), in the paper's order.
MERR_LABELS: tuple[str, ...] = (
    "neutral",
    "happy",
    "angry",
    "worried",
    "sad",
    "surprise",
    "fear",
    "doubt",
    "contempt",
)

# Spellings found in MER2023/MERR label files and in other corpora, mapped onto the nine.
_ALIASES: dict[str, str] = {
    "neu": "neutral",
    "hap": "happy",
    "happiness": "happy",
    "joy": "happy",
    "ang": "angry",
    "anger": "angry",
    "wor": "worried",
    "worry": "worried",
    "sadness": "sad",
    "sur": "surprise",
    "surprised": "surprise",
    "fearful": "fear",
    "afraid": "fear",
    "doubtful": "doubt",
    "contemptuous": "contempt",
}


class UnknownLabelError(ValueError):
    """A label that is not one of the nine MERR labels (nor a known spelling of one)."""


def normalize_label(raw: str) -> str:
    """Map a label as written in a label file onto the MERR label set, or raise UnknownLabelError."""
    key = raw.strip().lower()
    if key in MERR_LABELS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownLabelError(f"label {raw!r} is not one of the MERR labels {', '.join(MERR_LABELS)}")


def label_spellings(label: str) -> set[str]:
    """The label and every spelling in _ALIASES that maps onto it."""
    return {label, *(alias for alias, target in _ALIASES.items() if target == label)}
