"""The speech stage: a transcript per clip (sidecar or ASR, with doubt flags) and its tone measurements.

The tone *words* need the whole build (they are relative to the corpus), so this stage stores the
measurements and `assemble` turns them into `audio_tone_description`.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from merr_builder.config import BuildConfig, SpeechConfig
from merr_builder.records import ClipInfo
from merr_builder.media import AUDIO_SAMPLE_RATE, ClipAudio, map_clips_with_audio
from merr_builder.quarantine import StageResult
from merr_builder.schema import SPEECH_SCHEMA
from merr_builder.speech.flags import EMPTY_SIDECAR
from merr_builder.speech.protocol import ASRBackend, Transcript
from merr_builder.speech.sidecar import Sidecar, find_sidecar, read_sidecar
from merr_builder.speech.tone import egemaps, pace
from merr_builder.speech.windows import WindowedMean, WindowedTranscript, audio_windows
from merr_builder.stage import PartitionBatch

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def guess_language(text: str) -> str | None:
    """Language of a sidecar text by its script: 'zh' for mostly CJK, 'en' for mostly Latin letters.
    A guess for sidecars only (ASR reports its own)."""
    cjk, latin = len(CJK.findall(text)), len(_LATIN.findall(text))
    if cjk == latin == 0:
        return None
    return "zh" if cjk > latin else "en"


def _egemaps_values(audio: np.ndarray, sample_rate: int) -> list[float]:
    return egemaps(audio, sample_rate)[0]


def supported_languages(config: SpeechConfig) -> frozenset[str] | None:
    """The language codes the configured ASR backend knows (Whisper's); None without ASR."""
    if config.backend == "faster_whisper":
        from faster_whisper.tokenizer import _LANGUAGE_CODES  # (its one list; no public name)

        return frozenset(_LANGUAGE_CODES)
    if config.backend == "openai_whisper":
        from whisper.tokenizer import LANGUAGES

        return frozenset(LANGUAGES)
    return None


def make_asr(config: SpeechConfig) -> ASRBackend | None:
    if config.backend == "faster_whisper":
        from merr_builder.speech.faster_whisper import FasterWhisperASR

        return FasterWhisperASR(
            config.model_dir, device=config.device, compute_type=config.compute_type, beam_size=config.beam_size,
            vad=config.vad, temperature_fallback=config.temperature_fallback,
        )  # fmt: skip
    if config.backend == "openai_whisper":
        from merr_builder.speech.openai_whisper import OpenAIWhisperASR

        return OpenAIWhisperASR(
            config.openai_model, config.openai_download_root, config.beam_size, config.temperature_fallback
        )
    return None


@dataclass
class SpeechAnalyser:
    """The per-clip analysis, shared by the stage and the benchmarks."""

    config: SpeechConfig
    asr: ASRBackend | None

    def sidecar_for(self, clip: ClipInfo) -> Sidecar | None:
        if self.config.sidecar == "ignore":
            return None
        if clip.sidecar_transcript is not None:
            return Sidecar(clip.sidecar_transcript, clip.sidecar_source or "", clip.sidecar_encoding)
        path = find_sidecar(clip.path)
        return read_sidecar(path, self.config.sidecar_max_bytes, self.config.sidecar_encoding) if path is not None else None

    def analyse(self, clip: ClipInfo, audio: ClipAudio | None) -> dict:
        sidecar = self.sidecar_for(clip)  # an undecodable sidecar is this clip's error
        asr: Transcript | None = None
        english: Transcript | None = None
        features: list[float] | None = None
        if audio is not None:  # streamed in windows: ASR and eGeMAPS hold one window at a time
            task = "translate" if self.config.translate else "transcribe"
            transcript = WindowedTranscript(self.asr, self.config.language, task) if self.asr is not None else None
            translation = self._translation(sidecar)
            functionals = WindowedMean(_egemaps_values, AUDIO_SAMPLE_RATE)
            for offset, samples in audio_windows(audio.blocks(), AUDIO_SAMPLE_RATE):
                if transcript is not None:
                    transcript.add(offset / AUDIO_SAMPLE_RATE, samples)
                    language = transcript.decided_language
                    if translation is not None and language is not None and language != "en":
                        translation.add(offset / AUDIO_SAMPLE_RATE, samples, language)  # the same encoding, decoded again
                functionals.add(samples)
            asr, features = (transcript.result() if transcript is not None else None), functionals.result()
            english = translation.result() if translation is not None else None
        has_speech = bool(asr is not None and asr.text.strip())
        rate, pause_ratio, span = pace(asr.words) if asr is not None else (None, None, 0.0)
        row = {
            "clip_id": clip.clip_id,
            "has_speech": has_speech,
            "speech_rate": rate,
            "pause_ratio": pause_ratio,
            "speech_span_s": span,
            "egemaps": features,
            **self._asr_columns(asr),
            "asr_english": english.text if english is not None else None,
            **self._transcript(clip, audio, sidecar, asr),
        }
        return row

    def _translation(self, sidecar: Sidecar | None) -> WindowedTranscript | None:
        """Whisper's English translation of the windows whose speech is not English, where it is wanted:
        not when ASR already translates, nor when an English sidecar is the transcript."""
        if self.asr is None or not self.config.whisper_english or self.config.translate:
            return None
        if sidecar is not None and guess_language(sidecar.text) == "en":
            return None
        return WindowedTranscript(self.asr, None, "translate")

    def _asr_columns(self, asr: Transcript | None) -> dict:
        if asr is None:
            return {"asr_backend": None}
        return {
            "asr_backend": self.asr.name if self.asr else None,
            "asr_text": asr.text,
            "asr_language": asr.language,
            "asr_language_probability": asr.language_probability,
            "asr_task": asr.task,
            "asr_flags": list(asr.flags),
            "asr_avg_logprob": asr.avg_logprob,
            "asr_no_speech_prob": asr.no_speech_prob,
            "asr_compression_ratio": asr.compression_ratio,
            "asr_segments": [{"start": s.start, "end": s.end, "text": s.text} for s in asr.segments],
            "asr_words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability} for w in asr.words],
        }

    def _transcript(self, clip: ClipInfo, audio, sidecar: Sidecar | None, asr: Transcript | None) -> dict:  # type: ignore[no-untyped-def]
        # An empty sidecar (a blank .srt, an empty CSV sentence) says nothing: ASR speaks instead, flagged.
        empty = [EMPTY_SIDECAR] if sidecar is not None and not sidecar.text.strip() else []
        if sidecar is not None and not empty:
            return {
                "transcript": sidecar.text,
                "transcript_language": guess_language(sidecar.text),
                "transcript_source": f"sidecar:{sidecar.source}",
                "transcript_encoding": sidecar.encoding,
                "transcript_flags": [],
                "transcript_error": None,
            }
        if asr is not None:
            return {
                "transcript": asr.text,
                "transcript_language": asr.language if asr.task == "transcribe" else "en",
                "transcript_source": f"asr:{self.asr.name}" if self.asr else None,
                "transcript_flags": list(asr.flags) + empty,
                "transcript_error": None,
            }
        if empty:
            return {"transcript": "", "transcript_language": None, "transcript_source": f"sidecar:{sidecar.source}", "transcript_encoding": sidecar.encoding,
                    "transcript_flags": empty, "transcript_error": None}  # fmt: skip
        reason = (
            "the clip has no audio stream and no sidecar transcript"
            if audio is None
            else "ASR is off (speech.backend none) and there is no sidecar transcript"
        )
        return {"transcript": None, "transcript_language": None, "transcript_source": None,
                "transcript_flags": [], "transcript_error": reason}  # fmt: skip


GPU_BATCH_SIZE = 32  # clips side by side on a GPU under batch_size auto: Whisper large-v3 at beam 5 holds a few GB


def clips_side_by_side(config: SpeechConfig, asr: ASRBackend | None) -> int:
    """How many clips are transcribed side by side: `speech.batch_size`, where auto is 1 on the CPU (one
    core gains nothing from batching) and GPU_BATCH_SIZE on a GPU; 1 for a backend that cannot batch."""
    from merr_builder.speech.faster_whisper import FasterWhisperASR

    if not isinstance(asr, FasterWhisperASR):
        return 1
    if config.batch_size == "auto":
        return GPU_BATCH_SIZE if asr.device == "cuda" else 1
    return config.batch_size


class SpeechStage:
    """Transcripts and tone measurements of a partition's clips (one ASR model per worker process)."""

    name = "speech"
    version = "7"  # 7: speech.device and compute_type (the key carries them), any faster-whisper model folder; 6: faster-whisper's features read with one BLAS thread (the same transcript on any executor); 5: sidecars checked (size, encoding, control characters, SRT/VTT parsers), transcript_encoding; 2: an empty sidecar gives way to ASR; 3: one encoder pass per window, long clips in windows; 4: asr_english
    config_section = "speech"
    output_schema = SPEECH_SCHEMA

    def __init__(self, config: SpeechConfig) -> None:
        self.analyser = SpeechAnalyser(config, make_asr(config))
        self.side_by_side = clips_side_by_side(config, self.analyser.asr)

    @classmethod
    def models(cls, config: BuildConfig) -> dict[str, dict[str, str]]:
        if config.speech.backend == "faster_whisper":
            from merr_builder.assets import whisper_model_id

            return {"asr": whisper_model_id(config.speech.model_dir)}
        if config.speech.backend == "openai_whisper":
            from merr_builder.assets import model_sha256
            from merr_builder.speech.openai_whisper import checkpoint_path

            path = checkpoint_path(config.speech.openai_model, config.speech.openai_download_root)
            return {"asr": {"name": "openai-whisper", "file": str(path), "sha256": model_sha256(path)}}
        return {}

    @classmethod
    def from_config(cls, config: BuildConfig) -> "SpeechStage":
        return cls(config.speech)

    @classmethod
    def wants_gpu(cls, config: BuildConfig) -> bool:
        """faster-whisper runs where it is placed: on a cluster with GPU workers, there unless told cpu."""
        return config.speech.backend == "faster_whisper" and config.speech.device != "cpu"

    def run(self, batch: PartitionBatch) -> StageResult[dict]:
        if self.side_by_side == 1:
            return map_clips_with_audio(self.name, batch, self.analyser.analyse)
        asr = self.analyser.asr  # a FasterWhisperASR (side_by_side)

        def analyse(clip: ClipInfo, audio: ClipAudio | None) -> dict:
            with asr.one_of_batch():  # type: ignore[union-attr]
                return self.analyser.analyse(clip, audio)

        with ThreadPoolExecutor(self.side_by_side, thread_name_prefix="speech") as pool:
            return map_clips_with_audio(self.name, batch, analyse, pool)
