"""Long clips in bounded memory: the audio cut into windows at quiet points, each analysed alone, joined.

ASR and eGeMAPS hold working memory in proportion to the audio they are handed (faster-whisper's log-mel
of the whole signal, openSMILE's frame buffers): on a 10-minute clip about 600 MiB and 260 MiB. Here a clip
longer than WINDOW_S is cut into windows of at most that length, each cut at the quietest 100 ms of the
last SEARCH_S seconds before the limit so that a word is rarely split. MERR clips (2-20 s) are one window
and go to the backends unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from merr_builder.speech.flags import flag
from merr_builder.speech.protocol import ASRBackend, Segment, Transcript, join_texts

WINDOW_S = 60.0  # longest audio handed to a backend at once
SEARCH_S = 5.0  # the cut is sought in the last SEARCH_S seconds before a window's limit
QUIET_FRAME_S = 0.1  # loudness is compared over frames of this length


def window_bounds(audio: np.ndarray, sample_rate: int, window_s: float = WINDOW_S) -> list[tuple[int, int]]:
    """[start, end) sample bounds covering the audio, each at most `window_s` long, cut where it is quietest."""
    limit, search, frame = (int(x * sample_rate) for x in (window_s, SEARCH_S, QUIET_FRAME_S))
    n_samples, bounds, start = len(audio), [], 0
    while n_samples - start > limit:
        lo = start + max(limit - search, limit // 2)  # (short windows: search their second half)
        region = audio[lo : start + limit]
        frames = region[: len(region) // frame * frame].reshape(-1, frame)
        if len(frames):
            quietest = int(np.argmin(np.square(frames, dtype=np.float64).mean(axis=1)))
            end = lo + quietest * frame + frame // 2  # the middle of the quietest frame
        else:
            end = start + limit
        bounds.append((start, end))
        start = end
    bounds.append((start, n_samples))
    return bounds


def _shifted(segment: Segment, offset_s: float) -> Segment:
    words = tuple(replace(w, start=w.start + offset_s, end=w.end + offset_s) for w in segment.words)
    return replace(segment, start=segment.start + offset_s, end=segment.end + offset_s, words=words)


def transcribe_windowed(
    asr: ASRBackend, audio: np.ndarray, sample_rate: int, language: str | None, task: str, window_s: float = WINDOW_S
) -> Transcript:
    """`asr.transcribe` over the clip's windows, joined into one transcript with clip-relative times.

    Without a forced language, the first window with speech decides it and later windows are held to it
    (Whisper itself decides once, from the first 30 s it hears)."""
    bounds = window_bounds(audio, sample_rate, window_s)
    if len(bounds) == 1:
        return asr.transcribe(audio, language, task)
    segments: list[Segment] = []
    decided: Transcript | None = None
    for start, end in bounds:
        part = asr.transcribe(audio[start:end], language or (decided.language if decided else None), task)
        segments += [_shifted(s, start / sample_rate) for s in part.segments]
        if decided is None and (part.text.strip() or end == len(audio)):
            decided = part
    assert decided is not None
    text = join_texts([s.text for s in segments], decided.language, task)
    joined = Transcript(text, decided.language, decided.language_probability, tuple(segments), task)
    return replace(joined, flags=flag(joined, language_forced=language is not None))


def windowed_mean(
    measure,
    audio: np.ndarray,
    sample_rate: int,
    window_s: float = WINDOW_S,  # type: ignore[no-untyped-def]
) -> list[float]:
    """`measure(audio, sample_rate)` (a list of numbers) per window, averaged weighted by window length.

    For clip-level functionals such as eGeMAPS this is exact for a clip of one window and, for longer
    clips, the usual mean of segment-level functionals."""
    bounds = window_bounds(audio, sample_rate, window_s)
    if len(bounds) == 1:
        return list(measure(audio, sample_rate))
    values = np.array([measure(audio[a:b], sample_rate) for a, b in bounds], dtype=np.float64)
    weights = np.array([b - a for a, b in bounds], dtype=np.float64)
    return [float(v) for v in weights @ values / weights.sum()]
