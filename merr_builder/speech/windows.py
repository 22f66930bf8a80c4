"""Long clips in bounded memory: the audio cut into windows at quiet points, each analysed alone, joined.

ASR and eGeMAPS hold working memory in proportion to the audio they are handed (faster-whisper's log-mel
of the whole signal, openSMILE's frame buffers): on a 10-minute clip about 600 MiB and 260 MiB. Here the
audio arrives as a stream of blocks (`media.ClipAudio`) and leaves as windows of at most WINDOW_S, each
cut at the quietest 100 ms of the last SEARCH_S seconds before the limit so that a word is rarely split.
MERR clips (2-20 s) are one window and reach the backends unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from merr_builder.speech.flags import flag
from merr_builder.speech.protocol import ASRBackend, Segment, Transcript, join_texts

WINDOW_S = 60.0  # longest audio handed to a backend at once
SEARCH_S = 5.0  # the cut is sought in the last SEARCH_S seconds before a window's limit
QUIET_FRAME_S = 0.1  # loudness is compared over frames of this length


def _quiet_cut(window: np.ndarray, sample_rate: int) -> int:
    """Where to end a full window: the middle of its quietest frame near the end."""
    limit, search, frame = len(window), int(SEARCH_S * sample_rate), int(QUIET_FRAME_S * sample_rate)
    lo = max(limit - search, limit // 2)  # (short windows: search their second half)
    region = window[lo:]
    frames = region[: len(region) // frame * frame].reshape(-1, frame)
    if not len(frames):
        return limit
    quietest = int(np.argmin(np.square(frames, dtype=np.float64).mean(axis=1)))
    return lo + quietest * frame + frame // 2


def audio_windows(
    blocks: Iterable[np.ndarray], sample_rate: int, window_s: float = WINDOW_S
) -> Iterator[tuple[int, np.ndarray]]:
    """(first sample, samples) of consecutive windows of at most `window_s` over a stream of blocks,
    holding at most one window and one block; an empty stream gives one empty window."""
    limit = int(window_s * sample_rate)
    held: list[np.ndarray] = []
    n_held = offset = 0
    for block in blocks:
        held.append(block)
        n_held += len(block)
        while n_held > limit:
            buffer = np.concatenate(held)
            cut = _quiet_cut(buffer[:limit], sample_rate)
            yield offset, buffer[:cut]
            offset += cut
            held, n_held = [buffer[cut:]], len(buffer) - cut
    if n_held or offset == 0:
        yield offset, (np.concatenate(held) if held else np.empty(0, dtype=np.float32))


def window_bounds(audio: np.ndarray, sample_rate: int, window_s: float = WINDOW_S) -> list[tuple[int, int]]:
    """[start, end) sample bounds of the windows `audio_windows` cuts an array into."""
    return [(start, start + len(w)) for start, w in audio_windows([audio], sample_rate, window_s)]


def _shifted(segment: Segment, offset_s: float) -> Segment:
    words = tuple(replace(w, start=w.start + offset_s, end=w.end + offset_s) for w in segment.words)
    return replace(segment, start=segment.start + offset_s, end=segment.end + offset_s, words=words)


@dataclass
class WindowedTranscript:
    """One transcript from ASR over consecutive windows, with clip-relative times.

    Without a forced language, the first window with speech decides it and later windows are held to it
    (Whisper itself decides once, from the first 30 s it hears). A clip of one window keeps the backend's
    transcript as it is."""

    asr: ASRBackend
    language: str | None
    task: str
    _parts: list[Transcript] = field(default_factory=list)
    _segments: list[Segment] = field(default_factory=list)
    _decided: Transcript | None = None

    @property
    def decided_language(self) -> str | None:
        """The forced language, or the one the first window with speech decided (None before)."""
        return self.language or (self._decided.language if self._decided else None)

    def add(self, offset_s: float, samples: np.ndarray, language: str | None = None) -> None:
        """Transcribe one window; `language` forces this window's language (a translation of a window
        whose language the transcription decided)."""
        part = self.asr.transcribe(samples, language or self.decided_language, self.task)
        self._parts.append(part)
        self._segments += [_shifted(s, offset_s) for s in part.segments]
        if self._decided is None and part.text.strip():
            self._decided = part

    def result(self) -> Transcript | None:
        """The joined transcript; None when no window was added."""
        if not self._parts:
            return None
        if len(self._parts) == 1:
            return self._parts[0]
        decided = self._decided or self._parts[0]
        text = join_texts([s.text for s in self._segments], decided.language, self.task)
        joined = Transcript(text, decided.language, decided.language_probability, tuple(self._segments), self.task)
        return replace(joined, flags=flag(joined, language_forced=self.language is not None))


@dataclass
class WindowedMean:
    """Clip-level functionals (eGeMAPS) over windows: each window's, averaged weighted by its length. Exact
    for a clip of one window; beyond, the usual mean of segment-level functionals."""

    measure: Callable[[np.ndarray, int], list[float]]
    sample_rate: int
    _values: list[tuple[int, list[float]]] = field(default_factory=list)

    def add(self, samples: np.ndarray) -> None:
        if len(samples):
            self._values.append((len(samples), self.measure(samples, self.sample_rate)))

    def result(self) -> list[float] | None:
        if len(self._values) <= 1:
            return self._values[0][1] if self._values else None
        weights = np.array([n for n, _ in self._values], dtype=np.float64)
        values = np.array([v for _, v in self._values], dtype=np.float64)
        return [float(v) for v in weights @ values / weights.sum()]
