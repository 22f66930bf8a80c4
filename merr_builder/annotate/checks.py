"""Checking LLM answers before any becomes a fine caption. Each rejection says why, in `fine_status`.

The authors filtered LLaMA-3's output for "erroneous or contradictory descriptions" and duplicates
(facts file §1.9) without publishing the rule; these are ours, each a plain test.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from merr_builder.annotate.llm.protocol import Completion
from merr_builder.labels import MERR_LABELS, label_spellings

KEPT = "kept"
MIN_WORDS = 12  # shorter answers do not reason
NEAR_DUPLICATE = 0.9  # difflib ratio at which two answers are the same answer

# Words that name an emotion as the person's (a label or one of its spellings).
_LABEL_WORDS = {label: label_spellings(label) for label in MERR_LABELS}
_EXTRA_WORDS = {"happy": {"joyful", "delighted"}, "sad": {"sorrowful", "upset"}, "angry": {"furious", "annoyed"},
                "fear": {"scared", "frightened"}, "surprise": {"surprised", "astonished"}}  # fmt: skip
_ASSERTION = re.compile(r"\b(?:feels?|feeling|is|seems?|appears?|looks?|expresses|shows?)\s+((?:\w+\s+){0,2}\w+)", re.I)


def _words_for(label: str) -> set[str]:
    return _LABEL_WORDS[label] | _EXTRA_WORDS.get(label, set())


def asserted_labels(text: str) -> set[str]:
    """MERR labels the text asserts of the person ("she feels sad", "he is clearly angry")."""
    found = set()
    for match in _ASSERTION.finditer(text):
        for word in match.group(1).lower().split():  # the verb's next three words ("feels very sad")
            found |= {label for label in MERR_LABELS if word in _words_for(label)}
    return found


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def check_answer(completion: Completion, label: str) -> str:
    """KEPT, or the reason the answer is rejected."""
    text = completion.text.strip()
    if not text:
        return "rejected: empty answer"
    if completion.finish_reason == "length":
        return "rejected: truncated at the token limit"
    if len(text.split()) < MIN_WORDS:
        return "rejected: too short to reason"
    sentences = _sentences(text)
    if len(sentences) != len(set(sentences)):
        return "rejected: repeats a sentence"
    others = asserted_labels(text) - {label}
    mentions_label = any(re.search(rf"\b{re.escape(w)}\b", text, re.I) for w in _words_for(label))
    if others and not mentions_label:
        return f"rejected: asserts {', '.join(sorted(others))} instead of {label}"
    return KEPT


def near_duplicate(text: str, kept: list[tuple[str, str]]) -> str | None:
    """The clip id of an earlier kept answer that says the same, or None."""
    normal = " ".join(text.lower().split())
    for clip_id, other in kept:
        if SequenceMatcher(None, normal, other).ratio() >= NEAR_DUPLICATE:
            return clip_id
    return None
