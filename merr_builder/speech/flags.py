"""Reasons to doubt a transcript, with their thresholds in one place.

Whisper base guesses the wrong language on some Mandarin clips and then repeats one phrase (MER2023's
sample_00000727 comes out as Korean, p 0.42). These flags make that visible in the dataset instead of
passing it on as subtitles.
"""

from __future__ import annotations

from merr_builder.speech.protocol import Transcript

MIN_LANGUAGE_PROBABILITY = 0.7  # below: the detected language is a guess (a right guess is mostly > 0.9)
MAX_COMPRESSION_RATIO = 2.4  # above: the text repeats itself (Whisper's own hallucination threshold)
MAX_NO_SPEECH_PROBABILITY = 0.6  # above: the model thinks there is no speech
MIN_AVG_LOGPROB = -1.0  # below: low confidence in the words (Whisper's fallback threshold)
MAX_REPEATS = 3  # a phrase of 2+ tokens this many times in a row is a repetition loop …
MAX_SINGLE_REPEATS = 4  # … and a single token this many times (Chinese doubles and triples characters: 天天)

LOW_LANGUAGE_PROBABILITY = "low_language_probability"
REPETITION = "repetition"
NO_SPEECH = "no_speech_probable"
LOW_CONFIDENCE = "low_confidence"
EMPTY_SIDECAR = "empty_sidecar"  # a sidecar transcript was there but empty: ASR was used instead


def _repeats(text: str) -> bool:
    """A phrase of 1-8 tokens (words, or characters for unspaced scripts) repeated back to back."""
    tokens = [t.strip(",.!?，。！？、") for t in (text.split() if " " in text.strip() else list(text.strip()))]
    tokens = [t for t in tokens if t]
    for size in range(1, 9):
        times = MAX_SINGLE_REPEATS if size == 1 else MAX_REPEATS
        for start in range(0, len(tokens) - size * times + 1):
            chunk = tokens[start : start + size]
            if all(tokens[start + k * size : start + (k + 1) * size] == chunk for k in range(1, times)):
                return True
    return False


def flag(transcript: Transcript, language_forced: bool) -> tuple[str, ...]:
    flags = []
    if not language_forced and transcript.language_probability < MIN_LANGUAGE_PROBABILITY:
        flags.append(LOW_LANGUAGE_PROBABILITY)
    ratio = transcript.compression_ratio
    if (ratio is not None and ratio > MAX_COMPRESSION_RATIO) or _repeats(transcript.text):
        flags.append(REPETITION)
    if transcript.no_speech_prob is not None and transcript.no_speech_prob > MAX_NO_SPEECH_PROBABILITY:
        flags.append(NO_SPEECH)
    if transcript.avg_logprob is not None and transcript.avg_logprob < MIN_AVG_LOGPROB:
        flags.append(LOW_CONFIDENCE)
    return tuple(flags)
