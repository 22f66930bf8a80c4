"""Near-duplicate removal of fine captions: the MinHash LSH index against comparing every pair, one core.

    python benchmarks/dedup.py [--repeats 1]

Synthetic captions in the style of MERR's fine captions (four clue sentences from eight slot-filled
templates, then a conclusion), 3 % of them an earlier
caption with one to three words changed (a near-duplicate the check must catch), the rest independent.
Ours: `NearDuplicates` as the fine step runs it (each caption: is it a twin of an earlier kept one? if
not, keep it). Baseline: the same rule, `same_answer`, against every kept caption (what the step did
before). Both decide the first 1,000 captions in one run (decisions compared, ratio printed); ours then
decides 30,000 (target: under a minute of one core).
"""

from __future__ import annotations

import random
import re
import time

from one_core import arguments_on_one_core

from merr_builder.annotate.checks import NearDuplicates, same_answer
from merr_builder.labels import MERR_LABELS

PEOPLE = ["the woman", "the man", "the young man", "the older woman", "the speaker", "the girl", "the boy", "the mother",
          "the officer", "the student", "the doctor", "the groom"]  # fmt: skip
FACES = ["raises her brows", "frowns deeply", "smiles widely", "presses his lips together", "lowers her gaze",
         "opens his eyes wide", "wrinkles her nose", "tightens his lids", "drops her jaw", "purses her lips",
         "bites her lip", "narrows his eyes", "looks away", "clenches his jaw", "tilts her head"]  # fmt: skip
VOICES = ["speaks quickly and loudly", "speaks slowly and softly", "raises his voice", "hesitates between words",
          "sighs before answering", "laughs while talking", "keeps a flat, even tone", "trembles as she speaks",
          "whispers", "stammers", "shouts the last words", "pauses for a long time"]  # fmt: skip
TOPICS = ["the lost keys", "a broken promise", "the exam results", "her brother's visit", "the late train",
          "a surprise party", "the unpaid rent", "an old photograph", "the new job", "a phone call at night",
          "the wedding", "a stolen bicycle", "the hospital bill", "his father's letter", "the cancelled flight"]  # fmt: skip
WORDS = "quietly suddenly clearly barely plainly visibly openly briefly strongly gently".split()
SENTENCES = [
    "In the video, {p} {f} and {f} while talking about {t}.",
    "At the peak frame {p} {f}, which suggests {l}.",
    "The voice is telling: {p} {v}, {w} {w}.",
    "{p} says that {t} changed everything about {t}.",
    "Together with {t}, the way {p} {v} points to {l}.",
    "Because {p} {f} and then {v}, the clues {w} point to {l}.",
    "When asked about {t}, {p} {v} and {f}.",
    "The subtitle mentions {t} and {t}, and {p} {f} {w}.",
]


def caption(rng: random.Random) -> str:
    label = rng.choice(MERR_LABELS)
    fill = {"p": lambda: rng.choice(PEOPLE), "f": lambda: rng.choice(FACES), "v": lambda: rng.choice(VOICES),
            "t": lambda: rng.choice(TOPICS), "w": lambda: rng.choice(WORDS), "l": lambda: label}  # fmt: skip
    chosen = rng.sample(SENTENCES, 4)
    text = " ".join(re.sub(r"{(\w)}", lambda m: fill[m.group(1)](), sentence) for sentence in chosen)
    return f"{text} So the person feels {label} (clip {rng.randrange(10**6)})."


def edited(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


def captions(n: int, seed: int = 0, planted: dict[int, int] | None = None) -> list[str]:
    """`n` captions; `planted` (if given) gets copy position → the position of the caption it edits."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        if out and rng.random() < 0.03:
            source = rng.randrange(len(out))
            out.append(edited(out[source], rng))
            if planted is not None:
                planted[i] = source
        else:
            out.append(caption(rng))
    return out


def ours(texts: list[str]) -> list[str | None]:
    kept, decisions = NearDuplicates(), []
    for i, text in enumerate(texts):
        twin = kept.twin(text)
        decisions.append(twin)
        if twin is None:
            kept.add(str(i), text)
    return decisions


def every_pair(texts: list[str]) -> list[str | None]:
    kept: list[tuple[str, str]] = []
    decisions = []
    for i, text in enumerate(texts):
        twin = next((clip_id for clip_id, other in kept if same_answer(text, other)), None)
        decisions.append(twin)
        if twin is None:
            kept.append((str(i), text))
    return decisions


def timed(fn, texts):  # type: ignore[no-untyped-def]
    start = time.process_time()
    result = fn(texts)
    return result, time.process_time() - start


def main() -> None:
    arguments_on_one_core(__doc__, repeats=1)
    sample = captions(1_000)
    fast, fast_s = timed(ours, sample)
    slow, slow_s = timed(every_pair, sample)
    same = sum(a == b for a, b in zip(fast, slow))
    print(f"1,000 captions: every pair {slow_s:.2f} s, LSH {fast_s:.2f} s, ratio {slow_s / fast_s:.1f}x; "
          f"decisions equal on {same} of 1000 ({sum(d is not None for d in slow)} near-duplicates found by every pair, "
          f"{sum(d is not None for d in fast)} by LSH)")  # fmt: skip
    planted: dict[int, int] = {}
    many = captions(30_000, seed=1, planted=planted)
    decisions, seconds = timed(ours, many)
    # Every planted copy of a kept caption that the rule calls the same as it must be rejected: the
    # exhaustive check would reject it. (A copy of a caption that was itself rejected is compared with
    # what was kept, by both checks alike.)
    due = [i for i, source in planted.items() if decisions[source] is None and same_answer(many[i], many[source])]
    caught = sum(decisions[i] is not None for i in due)
    print(f"30,000 captions: LSH {seconds:.1f} s of one core (target < 60 s), {sum(d is not None for d in decisions)} near-duplicates; "
          f"of the {len(planted)} planted copies, {len(due)} copy a kept caption closely enough for the rule: {caught} caught")  # fmt: skip


if __name__ == "__main__":
    main()
