"""Default ASR backend: faster-whisper with Whisper base (CTranslate2, int8 on CPU), offline.

The model comes from two pinned PyPI packages, joined once and sha256-checked (`assets.whisper_base_dir`).
Voice-activity detection (Silero, shipped with faster-whisper) is on, so silence and music give no text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from merr_builder.assets import whisper_base_dir
from merr_builder.speech.flags import flag
from merr_builder.speech.protocol import Segment, Transcript, Word


class FasterWhisperASR:
    name = "faster_whisper"

    def __init__(
        self,
        model_dir: Path | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 5,
        vad: bool = True,
        cpu_threads: int = 0,
        temperature_fallback: bool = False,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model_dir = whisper_base_dir(model_dir)
        self.model = WhisperModel(str(self.model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self.beam_size = beam_size
        self.vad = vad
        # Without fallback a doubtful segment keeps its greedy/beam text and is flagged instead (flags.py).
        self.temperature = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if temperature_fallback else [0.0]

    def transcribe(self, audio: np.ndarray, language: str | None, task: str) -> Transcript:
        segments, info = self.model.transcribe(
            np.ascontiguousarray(audio, dtype=np.float32),
            language=language,
            task=task,
            beam_size=self.beam_size,
            vad_filter=self.vad,
            word_timestamps=True,
            temperature=self.temperature,
            condition_on_previous_text=False,  # one clip is one utterance; carrying text over feeds loops
        )
        parts = tuple(
            Segment(
                start=s.start, end=s.end, text=s.text.strip(), avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob,
                words=tuple(Word(w.start, w.end, w.word.strip(), w.probability) for w in (s.words or [])),
            )
            for s in segments
        )  # fmt: skip
        joiner = "" if info.language in ("zh", "ja", "th", "lo", "my") and task == "transcribe" else " "
        text = joiner.join(p.text for p in parts if p.text).strip()
        transcript = Transcript(text, info.language, float(info.language_probability), parts, task)
        return replace(transcript, flags=flag(transcript, language_forced=language is not None))
