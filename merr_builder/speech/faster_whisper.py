"""Default ASR backend: faster-whisper (CTranslate2), offline: int8 on the CPU, float16 on a GPU.

The default model is Whisper base from two pinned PyPI packages, joined once and sha256-checked
(`assets.whisper_base_dir`); `speech.model_dir` names any other faster-whisper folder (large-v3 on a GPU).
Voice-activity detection (Silero, shipped with faster-whisper) is on, so silence and music give no text.
Clips transcribed side by side in threads, each inside `one_of_batch`, have their model calls batched
(`speech.batching`).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from merr_builder.assets import whisper_model_dir
from merr_builder.speech.batching import BatchingWhisper
from merr_builder.speech.flags import flag
from merr_builder.speech.protocol import Segment, Transcript, Word, join_texts


_FEATURES_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # (inspecting the loaded libraries once, not at every window)


class OneThreadFeatures:
    """faster-whisper's log-mel features computed with one BLAS thread, one window at a time.

    The features are a NumPy product whose BLAS splits it by thread count: with one thread (a Dask worker
    starts with OMP_NUM_THREADS=1) they differed by 1e-7 from two, enough to turn the beam ("Why did you
    not tell me, ..." against "... tell me? ..."), so a build on Dask wrote other transcripts than the
    same build on threads. Computed with one thread they are the same everywhere. The limit is set and
    restored by the thread that computes (OpenBLAS's setting does not survive a restore from another
    thread), and the lock keeps clips transcribed side by side from restoring it under one another."""

    def __init__(self, extractor) -> None:  # type: ignore[no-untyped-def]
        self.extractor = extractor

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.extractor, name)

    def __call__(self, *args, **kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
        with _FEATURES_LOCK, _blas().limit(limits=1, user_api="blas"):
            return self.extractor(*args, **kwargs)


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

        _local = threading.local()  # per thread: (the last window encoded, its encoding); clips decoded side by side each keep their own

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.feature_extractor = OneThreadFeatures(self.feature_extractor)

        def detect_language(self, audio=None, features=None, **kwargs):  # type: ignore[no-untyped-def]
            if features is not None and features.shape[-1] > 1:  # (VAD can leave a single frame)
                features = features[..., :-1]  # the content frames, as generate_segments reads them
            return super().detect_language(audio=audio, features=features, **kwargs)

        def encode(self, features: np.ndarray):  # type: ignore[no-untyped-def]
            kept = getattr(self._local, "kept", None)
            if kept is not None and kept[0].shape == features.shape and np.array_equal(kept[0], features):
                return kept[1]
            encoded = super().encode(features)
            self._local.kept = (features.copy(), encoded)  # one window's encoding: about 3 MB for Whisper base
            return encoded

    return WhisperModelSharingEncoder


def resolved_device(device: str) -> str:
    """`speech.device` as CTranslate2 takes it: auto is cuda where CTranslate2 sees a GPU, else cpu."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolved_compute_type(compute_type: str, device: str) -> str:
    """`speech.compute_type` for a resolved device: auto is int8 on the CPU and float16 on a GPU."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class FasterWhisperASR:
    name = "faster_whisper"

    def __init__(
        self,
        model_dir: Path | None = None,
        device: str = "auto",
        compute_type: str = "auto",
        beam_size: int = 5,
        vad: bool = True,
        cpu_threads: int = 0,
        temperature_fallback: bool = False,
        decode_options: dict | None = None,
    ) -> None:
        self.model_dir = whisper_model_dir(model_dir)
        self.device = resolved_device(device)
        self.compute_type = resolved_compute_type(compute_type, self.device)
        self.model = _whisper_model_class()(
            str(self.model_dir), device=self.device, compute_type=self.compute_type, cpu_threads=cpu_threads
        )
        self.batched = BatchingWhisper(self.model.model)
        self.model.model = self.batched  # calls pass straight through outside `one_of_batch`
        self.beam_size = beam_size
        self.vad = vad
        # Without fallback a doubtful segment keeps its greedy/beam text and is flagged instead (flags.py).
        self.temperature = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if temperature_fallback else [0.0]
        # Further keyword arguments of faster-whisper's transcribe: the GPU benchmark suppresses
        # end-of-text with them, so that a random-weight model decodes as many tokens on every path.
        self.decode_options = dict(decode_options or {})

    def one_of_batch(self):  # type: ignore[no-untyped-def]
        """Context of one clip's transcription in one of several threads: inside it, this thread's model
        calls wait for the others' and go to the model with them (`speech.batching`)."""
        return self.batched.batcher.member()

    def options(self, language: str | None, task: str) -> dict:
        """faster-whisper's transcribe settings for one window (what the benchmarks give plain faster-whisper)."""
        return dict(
            language=language,
            task=task,
            beam_size=self.beam_size,
            vad_filter=self.vad,
            word_timestamps=True,
            temperature=self.temperature,
            condition_on_previous_text=False,  # one clip is one utterance; carrying text over feeds loops
            **self.decode_options,
        )

    def transcribe(self, audio: np.ndarray, language: str | None, task: str) -> Transcript:
        segments, info = self.model.transcribe(np.ascontiguousarray(audio, dtype=np.float32), **self.options(language, task))
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
