"""The ASR protocol: what a speech backend returns for one clip's audio."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    segments: tuple[Segment, ...] = ()
    task: str = "transcribe"  # or "translate" (to English)
    flags: tuple[str, ...] = field(default=())  # reasons to doubt it (see speech.flags)

    @property
    def avg_logprob(self) -> float | None:
        return float(np.mean([s.avg_logprob for s in self.segments])) if self.segments else None

    @property
    def no_speech_prob(self) -> float | None:
        return float(max(s.no_speech_prob for s in self.segments)) if self.segments else None

    @property
    def compression_ratio(self) -> float | None:
        return float(max(s.compression_ratio for s in self.segments)) if self.segments else None

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


_UNSPACED = ("zh", "ja", "th", "lo", "my")  # scripts written without spaces between words


def join_texts(texts: list[str], language: str, task: str) -> str:
    """Segment texts joined as the language writes them (translations are English, spaced)."""
    joiner = "" if language in _UNSPACED and task == "transcribe" else " "
    return joiner.join(t for t in texts if t).strip()


class ASRBackend(Protocol):
    name: ClassVar[str]

    def transcribe(self, audio: np.ndarray, language: str | None, task: str) -> Transcript:
        """`audio`: 16 kHz mono float32. `language`: ISO 639-1 to force, or None to detect."""
        ...
