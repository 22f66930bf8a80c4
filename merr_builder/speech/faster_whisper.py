"""Default ASR backend: faster-whisper with Whisper base (CTranslate2, int8 on CPU), offline.

The model comes from two pinned PyPI packages, joined once and sha256-checked (`assets.whisper_base_dir`).
Voice-activity detection (Silero, shipped with faster-whisper) is on, so silence and music give no text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from merr_builder.assets import whisper_base_dir
from merr_builder.speech.flags import flag
from merr_builder.speech.protocol import Segment, Transcript, Word, join_texts


def _whisper_model_class():  # faster-whisper is imported lazily (it loads CTranslate2)
    from faster_whisper import WhisperModel

    class WhisperModelSharingEncoder(WhisperModel):
        """WhisperModel that encodes a window once, however often it is decoded.

        faster-whisper 1.2 detects the language on one encoding of the first window and then, to decode,
        encodes that window again: on MERR's short clips (one window each) that second pass is a third of
        all ASR time, and the English translation of the same window (`speech.whisper_english`) would be a
        third. Here language detection reads the window exactly as decoding will (`generate_segments`
        drops the last mel frame), and `encode` hands back the last encoding when the same window comes.
        """

        _kept: tuple[np.ndarray, object] | None = None  # (the last window encoded, its encoding)

        def detect_language(self, audio=None, features=None, **kwargs):  # type: ignore[no-untyped-def]
            if features is not None and features.shape[-1] > 1:  # (VAD can leave a single frame)
                features = features[..., :-1]  # the content frames, as generate_segments reads them
            return super().detect_language(audio=audio, features=features, **kwargs)

        def encode(self, features: np.ndarray):  # type: ignore[no-untyped-def]
            kept = self._kept
            if kept is not None and kept[0].shape == features.shape and np.array_equal(kept[0], features):
                return kept[1]
            encoded = super().encode(features)
            self._kept = (features.copy(), encoded)  # one window's encoding: about 3 MB for Whisper base
            return encoded

    return WhisperModelSharingEncoder


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
        self.model_dir = whisper_base_dir(model_dir)
        self.model = _whisper_model_class()(
            str(self.model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )
        self.beam_size = beam_size
        self.vad = vad
        # Without fallback a doubtful segment keeps its greedy/beam text and is flagged instead (flags.py).
        self.temperature = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if temperature_fallback else [0.0]

    def transcribe(self, audio: np.ndarray, language: str | None, task: str) -> Transcript:
        # The log-mel features are a NumPy product whose BLAS splits it by thread count: with one thread
        # (a Dask worker starts with OMP_NUM_THREADS=1) they differed by 1e-7 from two, enough to turn the
        # beam ("Why did you not tell me, ..." against "... tell me? ..."), so a build on Dask wrote other
        # transcripts than the same build on threads. Read with one BLAS thread, they are the same everywhere.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._transcribed(audio, language, task)

    def _transcribed(self, audio: np.ndarray, language: str | None, task: str) -> Transcript:
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
        text = join_texts([p.text for p in parts], info.language, task)
        transcript = Transcript(text, info.language, float(info.language_probability), parts, task)
        return replace(transcript, flags=flag(transcript, language_forced=language is not None))
