"""Checking LLM answers before any becomes a fine caption. Each rejection says why, in `fine_status`.

The authors filtered LLaMA-3's output for "erroneous or contradictory descriptions" and duplicates
(facts file §1.9) without publishing the rule; these are ours, each a plain test.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from merr_builder.annotate.llm.protocol import Completion
from merr_builder.labels import LABEL_WORDS, OPPOSITE_KIND

KEPT = "kept"
MIN_WORDS = 12  # shorter answers do not reason
NEAR_DUPLICATE = 0.9  # difflib ratio at which two answers are the same answer

_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")  # the person's own words: quoted, not stated of them
# A word is negated when one of these comes at most NEGATION_REACH words before it ("shows no sign of anger").
_NEGATORS = frozenset({"not", "no", "never", "without", "nor", "neither", "hardly", "lack", "absence", "rather",
                       "instead", "free", "devoid", "nothing"})  # fmt: skip
NEGATION_REACH = 4
# A full sentence ends with . ! or ? (and a closing quote or bracket), then space or the end.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")


def _negated(words: list[str], position: int) -> bool:
    before = words[max(0, position - NEGATION_REACH) : position]
    return any(w in _NEGATORS or w.endswith("n't") for w in before)


def said_labels(text: str) -> tuple[set[str], set[str]]:
    """(labels stated of the person, labels denied of them) in any word of their lexicon (labels.LABEL_WORDS),
    leaving out words in quotes (what the person says); a negated word ("no sign of anger") denies."""
    words = _WORD.findall(_QUOTED.sub(" ", text.lower()))
    stated: set[str] = set()
    denied: set[str] = set()
    for i, w in enumerate(words):
        for label, lexicon in LABEL_WORDS.items():
            if w in lexicon:
                (denied if _negated(words, i) else stated).add(label)
    return stated, denied


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def full_sentences(text: str) -> str:
    """The text up to its last full sentence ("" when it has none): an answer cut at the token limit
    ends where its last sentence did."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else ""


def check_answer(completion: Completion, label: str) -> tuple[str, str | None]:
    """(KEPT, the caption) or (the reason the answer is rejected, None).

    An answer cut at the token limit keeps its full sentences when they still reason; a caption never
    ends mid-sentence."""
    text = completion.text.strip()
    if not text:
        return "rejected: empty answer", None
    if completion.finish_reason == "length":
        text = full_sentences(text)
        if len(text.split()) < MIN_WORDS:
            return "rejected: truncated at the token limit (no full sentences that reason)", None
    if len(text.split()) < MIN_WORDS:
        return "rejected: too short to reason", None
    sentences = _sentences(text)
    if len(sentences) != len(set(sentences)):
        return "rejected: repeats a sentence", None
    stated, denied = said_labels(text)
    opposite = sorted(stated & set(OPPOSITE_KIND[label]))
    if opposite:
        return f"rejected: states {', '.join(opposite)}, the opposite kind of {label}", None
    if label not in stated:
        return f"rejected: does not state {label} (nor a word of its lexicon)", None
    if label in denied:  # "happy ... yet not really happy": the caption contradicts its own label
        return f"rejected: also says the person is not {label}", None
    return KEPT, text


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
