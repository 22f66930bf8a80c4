"""openai-whisper backend (the name users know). Never downloads: a model name must already be in the
download folder (`~/.cache/whisper` by default), or a checkpoint path is given."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from merr_builder.assets import AssetError
from merr_builder.speech.flags import flag
from merr_builder.speech.protocol import Segment, Transcript, Word


def checkpoint_path(model: str, download_root: Path | None = None) -> Path:
    """The local file of a model name or path; an AssetError where whisper would have to download."""
    import whisper

    if Path(model).is_file():
        return Path(model)
    if model not in whisper._MODELS:  # noqa: SLF001  (whisper keeps its name → URL table there)
        raise AssetError(f"openai-whisper model {model!r} is neither a file nor one of {', '.join(whisper.available_models())}")
    root = Path(download_root or os.path.join(os.path.expanduser("~"), ".cache", "whisper"))
    path = root / os.path.basename(whisper._MODELS[model])  # noqa: SLF001
    if not path.is_file():
        raise AssetError(
            f"openai-whisper model {model!r} is not at {path}, and nothing is downloaded at run time; "
            "copy the checkpoint there or give its path"
        )
    return path


class OpenAIWhisperASR:
    name = "openai_whisper"

    def __init__(
        self,
        model: str = "base",
        download_root: Path | None = None,
        beam_size: int | None = None,
        temperature_fallback: bool = False,
    ) -> None:
        import whisper

        self.path = checkpoint_path(model, download_root)
        self.model = whisper.load_model(str(self.path), device="cpu")
        self.beam_size = beam_size
        self.temperature = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if temperature_fallback else 0.0
        self._whisper = whisper

    def _language_probability(self, audio: np.ndarray, language: str | None) -> tuple[str, float]:
        whisper = self._whisper
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels).to(self.model.device)
        _, probs = self.model.detect_language(mel)
        detected = max(probs, key=probs.get)
        lang = language or detected
        return lang, float(probs.get(lang, 0.0))

    def transcribe(self, audio: np.ndarray, language: str | None, task: str) -> Transcript:
        audio = np.array(audio, dtype=np.float32)  # a writable copy: whisper hands it to torch
        lang, probability = self._language_probability(audio, language)
        result = self.model.transcribe(
            audio, language=lang, task=task, fp16=False, word_timestamps=True,
            condition_on_previous_text=False, beam_size=self.beam_size, verbose=None, temperature=self.temperature,
        )  # fmt: skip
        parts = tuple(
            Segment(
                start=float(s["start"]), end=float(s["end"]), text=s["text"].strip(),
                avg_logprob=float(s["avg_logprob"]), compression_ratio=float(s["compression_ratio"]),
                no_speech_prob=float(s["no_speech_prob"]),
                words=tuple(Word(float(w["start"]), float(w["end"]), w["word"].strip(), float(w["probability"]))
                            for w in s.get("words", [])),
            )
            for s in result["segments"]
        )  # fmt: skip
        transcript = Transcript(result["text"].strip(), lang, probability, parts, task)
        return replace(transcript, flags=flag(transcript, language_forced=language is not None))
