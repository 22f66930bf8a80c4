"""Emotion-LLaMA's training tasks: instruction pools, the per-sample prompt, and target normalisation.

One definition for everything that turns a MERR row into an instruction sample: the ShareGPT export
and the bundled trainer. Verbatim from the Emotion-LLaMA repository's dataset class (facts file §2.1-2.3).
"""

from __future__ import annotations

import random
import re

from merr_builder.labels import MERR_LABELS

EMOTION_INSTRUCTIONS = (
    "Please determine which emotion label in the video represents: happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt.",
)
REASON_INSTRUCTIONS = (
    "Please analyze all the clues in the video and reason out the emotional label of the person in the video.",
    "What is the emotional state of the person in the video? Please tell me the reason.",
    "What are the facial expressions and vocal tone used in the video? What is the intended meaning behind his words? Which emotion does this reflect?",
    "Please integrate information from various modalities to infer the emotional category of the person in the video.",
    "Could you describe the emotion-related features of the individual in the video? What emotional category do they fall into?",
)
# task → (instruction pool, the shard column that holds the target)
TASKS: dict[str, tuple[tuple[str, ...], str]] = {
    "emotion": (EMOTION_INSTRUCTIONS, "label"),
    "reason": (REASON_INSTRUCTIONS, "coarse_caption"),  # stage 1, with emotion
    "reason_v2": (REASON_INSTRUCTIONS, "fine_caption"),  # stage 2
}
VIDEO_SLOT, FEATURE_SLOT = "<VideoHere>", "<FeatureHere>"

assert set(MERR_LABELS) == {w.strip(" .") for w in EMOTION_INSTRUCTIONS[0].split(":")[1].split(",")}


def instruction(task: str, sentence: str, rng: random.Random, with_slots: bool = True) -> str:
    """The per-sample instruction, `[INST]`-free: the model's chat wrapper adds that. `sentence` is the
    row's `speech.subtitle.spoken_sentence`: the CSV sentence the original loader formats the same way.

    `with_slots=False` leaves out the `<video><VideoHere></video> <feature><FeatureHere></feature>` prefix
    (exports whose consumer places its own media tokens).
    """
    pool, _ = TASKS[task]
    says = f"The person in video says: {sentence}. "
    body = f"{says}[{task}] {rng.choice(pool)}"
    return f"<video>{VIDEO_SLOT}</video> <feature>{FEATURE_SLOT}</feature> {body}" if with_slots else body


_PUNCTUATION = re.compile(r"[.!\"()*#:;~]")


def normalise_target(text: str, max_words: int = 200) -> str:
    """As the original's `blip_caption` processor: lower case, `. ! " ( ) * # : ; ~` to spaces, spaces
    collapsed, at most 200 words."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(words[:max_words])


def target(task: str, row: dict) -> str | None:
    """The normalised answer of `task` for a shard row, or None when the row has none."""
    value = row.get(TASKS[task][1])
    return normalise_target(value) if isinstance(value, str) and value.strip() else None
