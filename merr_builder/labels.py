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


# Words that state each label of a person, beyond its spellings: the label's WordNet 3.1 synonyms and
# derived forms, and the near-synonyms the emotion-word lists of Shaver et al. (1987, "Emotion knowledge")
# group under the same basic emotion. The fine-caption check (annotate/checks.py) asks an answer to state
# its label in one of these words, and to state none of the opposite kind.
LABEL_WORDS: dict[str, frozenset[str]] = {
    "neutral": frozenset({"neutral", "calm", "calmly", "calmness", "composed", "composure", "impassive", "unemotional",
                          "expressionless", "indifferent", "indifference", "placid", "unmoved", "detached", "matter-of-fact"}),
    "happy": frozenset({"happy", "happily", "happiness", "joy", "joyful", "joyous", "delight", "delighted", "cheerful",
                        "cheerfulness", "glad", "gladness", "pleased", "pleasure", "elated", "elation", "amused",
                        "amusement", "contented", "contentment", "merry", "jubilant", "ecstatic", "overjoyed", "thrilled",
                        "enthusiastic", "enthusiasm"}),
    "angry": frozenset({"angry", "angrily", "anger", "furious", "fury", "rage", "raging", "enraged", "irate", "irritated",
                        "irritation", "annoyed", "annoyance", "frustrated", "frustration", "resentful", "resentment",
                        "indignant", "indignation", "hostile", "hostility", "outraged", "outrage", "exasperated",
                        "exasperation", "infuriated", "livid", "agitated"}),
    "worried": frozenset({"worried", "worry", "worries", "worrying", "anxious", "anxiously", "anxiety", "nervous",
                          "nervousness", "concerned", "uneasy", "unease", "apprehensive", "apprehension", "troubled",
                          "distressed", "distress", "stressed", "tense", "fretful", "restless"}),
    "sad": frozenset({"sad", "sadly", "sadness", "unhappy", "unhappiness", "sorrow", "sorrowful", "grief", "grieving",
                      "upset", "depressed", "depression", "melancholy", "gloomy", "gloom", "miserable", "misery",
                      "heartbroken", "despair", "dejected", "downcast", "disappointed", "disappointment", "hurt",
                      "distress", "distressed", "tearful", "despondent", "mournful"}),
    "surprise": frozenset({"surprise", "surprised", "astonished", "astonishment", "amazed", "amazement", "shocked",
                           "shock", "startled", "stunned", "astounded", "disbelief", "incredulous", "incredulity"}),
    "fear": frozenset({"fear", "fearful", "afraid", "scared", "frightened", "fright", "terrified", "terror", "panic",
                       "panicked", "horrified", "horror", "alarmed", "alarm", "dread", "petrified"}),
    "doubt": frozenset({"doubt", "doubtful", "doubting", "skeptical", "sceptical", "skepticism", "scepticism",
                        "suspicious", "suspicion", "uncertain", "uncertainty", "unsure", "puzzled", "confused",
                        "confusion", "disbelief", "distrust", "distrustful", "incredulous", "hesitant", "hesitation",
                        "questioning", "perplexed"}),
    "contempt": frozenset({"contempt", "contemptuous", "disdain", "disdainful", "scorn", "scornful", "sneer", "sneering",
                           "dismissive", "condescending", "condescension", "derision", "derisive", "mocking", "mockery",
                           "disgust", "disgusted", "disrespect", "disrespectful"}),
}

# Labels whose words contradict a label: the other side of the valence axis of Russell's circumplex (1980).
# Happy is pleasant; sad, angry, worried, fear, doubt and contempt are unpleasant; surprise can be either,
# so only calm contradicts it; a neutral clip contradicts every emotion stated of the person.
_PLEASANT, _UNPLEASANT = ("happy",), ("sad", "angry", "worried", "fear", "doubt", "contempt")
OPPOSITE_KIND: dict[str, tuple[str, ...]] = {
    "happy": _UNPLEASANT,
    **{label: _PLEASANT for label in _UNPLEASANT},
    "surprise": ("neutral",),
    "neutral": tuple(label for label in MERR_LABELS if label != "neutral"),
}
assert set(LABEL_WORDS) == set(OPPOSITE_KIND) == set(MERR_LABELS)
assert all(label_spellings(label) <= LABEL_WORDS[label] | {a for a in _ALIASES if len(a) == 3} for label in MERR_LABELS)
