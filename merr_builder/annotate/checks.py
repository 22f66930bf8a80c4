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


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def same_answer(a: str, b: str) -> bool:
    """Whether two answers say the same (difflib ratio of their normalised texts ≥ NEAR_DUPLICATE)."""
    return SequenceMatcher(None, _normal(a), _normal(b)).ratio() >= NEAR_DUPLICATE


# Candidates for `same_answer` come from a MinHash LSH index over word pairs: two answers at a difflib ratio
# of 0.9 share most word pairs (an edited word changes two: one word in ten changed leaves a Jaccard
# similarity near 0.67), while answers that only share the prompt's stock phrases share few. The index's
# threshold sits below what near-duplicates reach, so it misses none in practice; each candidate is then
# decided by `same_answer`, the rule itself.
LSH_THRESHOLD = 0.5
LSH_PERMUTATIONS = 128
# The index also returns a few answers that share less (a fixed share of all it holds, so still a cost
# that grows with the square); the exact share of word pairs sorts those out before difflib runs.
MIN_SHARED_PAIRS = 0.5


def _word_pairs(text: str) -> set[bytes]:
    words = _normal(text).split()
    return {f"{a} {b}".encode() for a, b in zip(words, words[1:])} or {w.encode() for w in words}


class NearDuplicates:
    """The kept answers, so that each new one is compared only with those it may repeat: near-linear in
    the number of answers, where comparing with every kept one was quadratic."""

    def __init__(self) -> None:
        from datasketch import MinHashLSH

        self._index = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=LSH_PERMUTATIONS)
        self._texts: dict[str, str] = {}
        self._pairs: dict[str, set[bytes]] = {}
        self._order: dict[str, int] = {}

    @staticmethod
    def _signature(pairs: set[bytes]):  # type: ignore[no-untyped-def]
        from datasketch import MinHash

        signature = MinHash(num_perm=LSH_PERMUTATIONS)
        signature.update_batch(sorted(pairs))
        return signature

    def twin(self, text: str) -> str | None:
        """The clip id of the earliest kept answer that says the same as `text`, or None."""
        if not self._texts:
            return None
        pairs = _word_pairs(text)
        found = self._index.query(self._signature(pairs))
        close = [c for c in found if len(pairs & self._pairs[c]) >= MIN_SHARED_PAIRS * len(pairs | self._pairs[c])]
        return next((c for c in sorted(close, key=self._order.__getitem__) if same_answer(text, self._texts[c])), None)

    def add(self, clip_id: str, text: str) -> None:
        pairs = _word_pairs(text)
        self._order[clip_id] = len(self._order)
        self._texts[clip_id] = text
        self._pairs[clip_id] = pairs
        self._index.insert(clip_id, self._signature(pairs))
