"""Audio tone cues: eGeMAPS functionals, speech rate and pauses, and words for them.

The words are relative to the build's own corpus (z-scores over the clips with speech), so "high pitch"
means high for this corpus, not for an absolute norm. Every threshold is here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from merr_builder.speech.protocol import Word

NO_SPEECH = "no audible speech"
TOO_FEW = "not compared (fewer than {n} clips with speech in the build)"

# Which eGeMAPSv02 functional stands for which cue (openSMILE's names).
PITCH_MEAN = "F0semitoneFrom27.5Hz_sma3nz_amean"
PITCH_VARIABILITY = "F0semitoneFrom27.5Hz_sma3nz_stddevNorm"
LOUDNESS = "loudness_sma3_amean"

Z_HIGH = 1.0  # a cue this many standard deviations above the corpus mean is "high"
Z_LOW = -1.0
MIN_CORPUS = 3  # fewer clips with speech than this: no corpus to compare against
PAUSE_MIN_S = 0.25  # a gap between words at least this long is a pause

# cue → (phrase when high, phrase when low); None: nothing worth saying on that side
TONE_PHRASES: dict[str, tuple[str | None, str | None]] = {
    "loudness": ("loud", "soft"),
    "pitch_mean": ("high-pitched", "low-pitched"),
    "speech_rate": ("speaking fast", "speaking slowly"),
    "pitch_variability": ("with a lively, varying intonation", "with a flat, monotonous intonation"),
    "pause_ratio": ("with long pauses", None),
}
CUES = tuple(TONE_PHRASES)
EVEN = "even and moderate"
MODERATE = "moderate"  # loudness and pitch neither high nor low, said before a clause about pace or intonation


@lru_cache(maxsize=1)
def _smile():
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )


_SMILE_LOCK = threading.Lock()  # one openSMILE instance serves the process; clips analysed side by side take turns


def egemaps(audio: np.ndarray, sample_rate: int) -> tuple[list[float], list[str]]:
    """The 88 eGeMAPSv02 functionals of a clip, and their names."""
    with _SMILE_LOCK:
        frame = _smile().process_signal(np.ascontiguousarray(audio, dtype=np.float32), sample_rate)
    return [float(v) for v in frame.iloc[0].to_numpy()], list(frame.columns)


def egemaps_names() -> list[str]:
    return list(_smile().feature_names)


def pace(words: list[Word]) -> tuple[float | None, float | None, float]:
    """Speech rate (words per second over the spoken span), pause ratio (share of that span in pauses of
    at least PAUSE_MIN_S between words) and the span itself."""
    if len(words) < 2:
        return None, None, 0.0
    span = words[-1].end - words[0].start
    if span <= 0:
        return None, None, 0.0
    gaps = [b.start - a.end for a, b in zip(words, words[1:])]
    paused = sum(g for g in gaps if g >= PAUSE_MIN_S)
    return len(words) / span, paused / span, span


def cue_values(features: list[float] | None, names: list[str], speech_rate: float | None, pause_ratio: float | None) -> dict[str, float | None]:
    index = {n: i for i, n in enumerate(names)}
    value = (lambda n: features[index[n]]) if features else (lambda n: None)  # noqa: E731
    return {
        "loudness": value(LOUDNESS),
        "pitch_mean": value(PITCH_MEAN),
        "speech_rate": speech_rate,
        "pitch_variability": value(PITCH_VARIABILITY),
        "pause_ratio": pause_ratio,
    }


@dataclass(frozen=True)
class CorpusStats:
    n: int
    mean: dict[str, float]
    std: dict[str, float]


def corpus_stats(rows: list[dict[str, float | None]]) -> CorpusStats:
    """Mean and standard deviation of each cue over the clips that have it."""
    mean, std = {}, {}
    for cue in CUES:
        values = np.array([r[cue] for r in rows if r.get(cue) is not None], dtype=np.float64)
        mean[cue] = float(values.mean()) if len(values) else 0.0
        std[cue] = float(values.std()) if len(values) > 1 else 0.0
    return CorpusStats(n=len(rows), mean=mean, std=std)


def zscores(cues: dict[str, float | None], stats: CorpusStats) -> dict[str, float]:
    return {
        cue: (value - stats.mean[cue]) / stats.std[cue]
        for cue, value in cues.items()
        if value is not None and stats.std.get(cue, 0.0) > 0
    }


def describe_tone(cues: dict[str, float | None] | None, stats: CorpusStats) -> str:
    """Words for a clip's tone relative to the corpus; "no audible speech" without speech."""
    if cues is None:
        return NO_SPEECH
    if stats.n < MIN_CORPUS:
        return TOO_FEW.format(n=MIN_CORPUS)
    z = zscores(cues, stats)
    phrases = []
    for cue, (high, low) in TONE_PHRASES.items():
        if cue not in z:
            continue
        if z[cue] >= Z_HIGH and high:
            phrases.append(high)
        elif z[cue] <= Z_LOW and low:
            phrases.append(low)
    if not phrases:
        return EVEN
    adjectives = [p for p in phrases if " " not in p]  # "loud", "high-pitched": join with "and"
    clauses = [p for p in phrases if " " in p]
    # The words follow "the person's tone is": a clause alone ("with long pauses") needs an adjective first.
    head = " and ".join(adjectives) or MODERATE
    return ", ".join([head, *clauses])
