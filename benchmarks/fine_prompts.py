"""Fine-step prompts of the real shape, made by the project's own code from varied clue sets.

Each prompt is what `annotate/fine.py` sends for a row: the paper's fine question around the row's coarse
caption (`annotate.coarse.coarse_caption`), whose clues come from the same generators a build uses:
`objective_description` (people, position, framing, head pose), `describe_expression` (the strongest AUs
of a random AU vector, as MERR phrases), `describe_tone` (cues relative to a corpus), and an English
subtitle: MER2023-like lines, English and translated from Chinese, 4 to 40 words (cut as the build cuts
them). About a tenth of the rows are silent and a tenth have speech whose words are not quoted (doubtful
ASR), as in a build. The MER2023 sample's prompts run 110-177 tokens (mean 141) with SmolLM2's chat
template (issue 20); these run about the same, and the benchmark prints their lengths.
"""

from __future__ import annotations

import random

import numpy as np

from merr_builder.annotate.coarse import coarse_caption
from merr_builder.annotate.llm.protocol import ChatRequest
from merr_builder.annotate.prompts import FINE_QUESTION, FINE_SYSTEM
from merr_builder.facs import AU_NAMES
from merr_builder.faces.expression import describe_expression
from merr_builder.labels import MERR_LABELS
from merr_builder.speech.tone import CUES, corpus_stats, describe_tone

SUBTITLES = [  # MER2023-like: Chinese TV dialogue in English translation, and English lines
    "Oh no, my phone and wallet are all in my bag.",
    "I'm not going in anymore, scared.",
    "Why are you looking at me like this? It's just a woman, so you have to have something to do with me.",
    "No, this, I have to get up! You, I'm sorry, everyone. I'm sorry, it's from the German side.",
    "What did you say?",
    "I told you a hundred times, don't touch my things.",
    "Mom, I passed the exam, I really passed it!",
    "You never listen to me, you only think about yourself.",
    "It's fine, really, I'm not angry at all.",
    "Where have you been all night? Do you know how worried I was?",
    "Thank you, thank you so much, I don't know how to repay you.",
    "He left without saying a word, not even goodbye.",
    "Are you kidding me? This is the third time this week.",
    "I just want to live a quiet life, is that too much to ask?",
    "Don't cry, everything will be all right, I promise.",
    "Who let you in here? Get out!",
    "I didn't expect you to come back, after all these years.",
    "So this is how you treat your own brother.",
    "Hurry up, the train is leaving in five minutes.",
    "Well, I suppose we could try it your way this time.",
    "Really? You mean it? You're not lying to me?",
    "I have nothing more to say to you.",
    "That's impossible, I checked it myself this morning, the money was still in the drawer.",
    "If you had told me earlier, none of this would have happened, and now it's too late to do anything about it.",
    "Sister, don't go, please, I'm begging you.",
    "Look at this mess, who is going to clean it up?",
    "I'm fine.",
    "Stop it, both of you, people are watching.",
    "You think I don't know what you did last summer? Everybody in the village knows.",
    "My father worked his whole life for this family and what did he get in the end? Nothing, not even a thank you.",
    "Great, just great, now we're lost.",
    "Can you keep a secret? I'm getting married next month.",
    "I never said that, you're twisting my words again.",
    "Let's eat first, we'll talk about it later.",
    "How dare you speak to my mother like that!",
    "It doesn't matter anymore, it's over between us.",
    "I waited for you at the station for three hours, in the rain, and you didn't even call to say you weren't coming.",
    "Uncle Wang, it's not that I don't want to help you, but the company has rules, and if I break them this time, what do I say to the others?",
    "Do you know what the doctor said? He said if we had come one day later, there would have been nothing they could do.",
    "Everyone in this office knows you took the credit for my work, and you still have the nerve to stand here and lecture me about teamwork?",
    "Listen to me, whatever happens tonight, you stay in the car, you lock the doors and you don't open them for anyone, do you understand?",
    "When I was your age I was already working in the factory to feed my little brothers, and you complain that your phone is too old.",
    "I'm sorry, I really am, I know I promised to be there for your birthday, but the boss called me back at the last minute.",
    "She said she would marry me as soon as I bought the apartment, and now that I have it, she says she needs more time to think.",
]


def _row(rng: random.Random, stats, tone_rows: list[dict]) -> dict:
    """A build row's clue columns, drawn at random in the ranges a build writes."""
    n_faces = rng.choice([1, 1, 1, 2, 2, 3])
    w = rng.uniform(0.1, 0.5)
    row: dict = {
        "n_faces": n_faces,
        "face_box_peak": {"x": rng.uniform(0, 1 - w), "y": rng.uniform(0, 0.5), "w": w, "h": rng.uniform(0.12, 0.7)},
        "head_pose_peak": {"yaw": rng.gauss(0, 20), "pitch": rng.gauss(0, 10), "roll": rng.gauss(0, 5)},
    }
    aus = np.zeros(len(AU_NAMES))
    for index in rng.sample(range(len(AU_NAMES)), rng.randint(1, 6)):
        aus[index] = rng.uniform(0.5, 4.0)
    row["visual_expression_description"] = describe_expression(aus)
    kind = rng.random()
    if kind < 0.1:  # silent
        row.update(audio_tone_description=describe_tone(None, stats), transcript="", transcript_en=None)
    else:
        row["audio_tone_description"] = describe_tone(rng.choice(tone_rows), stats)
        row["transcript"] = row["transcript_en"] = rng.choice(SUBTITLES)
        if kind < 0.2:  # doubtful ASR: heard, not quoted
            row["transcript_flags"] = ["low_confidence"]
    return row


def real_requests(n: int, seed: int = 0) -> list[ChatRequest]:
    """`n` fine prompts as the fine step makes them, from random clue sets."""
    rng = random.Random(seed)
    tone_rows = [{cue: rng.gauss(0, 1) for cue in CUES} for _ in range(200)]
    stats = corpus_stats(tone_rows)
    out = []
    for _ in range(n):
        row = _row(rng, stats, tone_rows)
        label = rng.choice([label for label in MERR_LABELS if label != "neutral"] * 9 + ["neutral"])
        out.append(ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=coarse_caption(row), label=label)))
    return out
