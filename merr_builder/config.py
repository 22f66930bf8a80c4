"""Typed build configuration: one section per stage, loadable from YAML/TOML, overridable by flags.

Every section forbids unknown keys, so a typo fails before any work starts, naming the field.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """An invalid configuration: raised before any clip is touched."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Settings that change how fast a section's stage runs, never what it writes: left out of its key.
    unkeyed: ClassVar[frozenset[str]] = frozenset()

    def fingerprint(self) -> str:
        """A stable digest of this section, part of each stage's cache key."""
        return hashlib.sha256(self.model_dump_json(exclude=set(self.unkeyed)).encode()).hexdigest()


VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".3gp")


class IngestConfig(_Section):
    """Finding clips and joining their sidecar transcripts and labels."""

    layout: Literal["auto", "folder", "manifest", "mer2023"] = Field(
        "auto", description="auto: a .csv input is a manifest; a folder with video/ + transcription_en_all.csv is MER2023"
    )
    extensions: tuple[str, ...] = Field(VIDEO_EXTENSIONS, description="video file extensions found in a folder")
    transcripts_file: Path | None = Field(None, description="name,sentence CSV; MER2023 default: transcription_en_all.csv")
    labels_file: Path | None = Field(None, description="CSV with a name/clip_id column and a label/discrete column")
    require_audio: bool = Field(True, description="quarantine clips with no audio stream (MERR needs speech)")
    video_stream: int | None = Field(
        None, ge=0, description="which video stream to read where a file has several (ffmpeg's v:N); None: the first that is not cover art"
    )

    @model_validator(mode="after")
    def _extensions_dotted(self) -> "IngestConfig":
        bad = [e for e in self.extensions if not e.startswith(".")]
        if bad:
            raise ValueError(f"extensions must start with '.', got {bad}")
        return self


# Who decodes the faces stage's frames (media.iter_packed_frames).
VideoDecoder = Literal["pyav", "ffmpeg"]


class MediaConfig(_Section):
    """Decoding: audio for speech and tone, sampled frames for faces, K uniform frames for the temporal encoders."""

    k_frames: int = Field(16, ge=1, le=256, description="uniformly spaced frames kept as JPEG per clip")
    jpeg_quality: int = Field(90, ge=1, le=100, description="of the K frames, and of the faces stage's peak frame and face")
    frame_max_side: int = Field(448, ge=32, description="longest side of the stored JPEG frames (aspect kept)")
    truncation_tolerance_s: float = Field(
        0.5, ge=0, description="a stream that decodes this much shorter than its container says is truncated"
    )
    decoder: VideoDecoder = Field(
        "pyav", description="the faces stage's pass over every frame: pyav (FFmpeg's libraries in this process) | ffmpeg (the ffmpeg CLI"
        " through a pipe: a system ffmpeg with decoders PyAV's build lacks)",
    )


class FacesConfig(_Section):
    """Faces, facial action units and the emotional peak frame."""

    backend: Literal["litert", "mediapipe", "openface", "pyfeat"] = Field(
        "litert", description="AU extractor; litert: MediaPipe's face models called directly, mediapipe: through MediaPipe Tasks"
    )
    sample_fps: float = Field(5.0, gt=0, le=240, description="frames per second analysed (then every frame near the best)")
    every_frame: bool = Field(False, description="analyse every decoded frame instead of sample_fps")
    landmarker_path: Path | None = Field(None, description="face_landmarker.task; default: found and hash-checked")
    detector_path: Path | None = Field(None, description="full-range face detector .tflite; default: found")
    openface_dir: Path | None = Field(None, description="folder of OpenFace CSVs named <clip_id>.csv (openface)")
    max_faces: int = Field(8, ge=1, le=32, description="faces analysed per frame")
    min_detection_confidence: float = Field(0.5, gt=0, lt=1)
    detect_every_s: float = Field(
        0.4, ge=0, description="litert: the detector runs this often (and where a followed face is lost); between, faces are followed by their"
        " landmarks. 0.4 s: a person in view for 0.8 s is detected twice, as a track needs to count",
    )
    min_tracking_presence: float = Field(
        0.5, gt=0, lt=1, description="litert: a followed face is kept while the landmark model's presence score reaches this (MediaPipe's default)"
    )
    frame_cache_mb: int = Field(
        256, ge=0, description="a clip's decoded frames are kept up to this size (one decode per clip); a longer clip is decoded again near its peak"
    )
    crop_margin: float = Field(0.8, ge=0, description="mediapipe, litert: the square a face is looked for in (by the landmarker's short-range detector) is this many face-box sides wider on each side")
    crop_size: int = Field(192, ge=64, description="mediapipe: pixels of the square crop the landmarker sees")
    min_track_share: float = Field(0.2, ge=0, le=1, description="share of face frames a track needs to count")
    peak_method: Literal["sum", "most_frequent"] = Field("sum", description="sum: authors' definition")
    most_frequent_k: int = Field(3, ge=1, le=18, description="AUs summed by peak_method most_frequent")
    exclude_aus: tuple[str, ...] = Field(("AU45",), description="AUs left out of the peak score (a blink is not an expression)")
    smooth_window: int = Field(1, ge=1, le=9, description="moving mean over sampled frames; 1 = none")
    peak_hold_s: float = Field(
        0.1, ge=0, le=1, description="a frame scores the AU sum it holds over this window (a one-frame spike cannot win); 0: off"
    )
    baseline_percentile: float = Field(
        25.0, ge=0, le=50, description="per face, this percentile of each AU over the clip is its resting face; 0: none"
    )
    baseline_max: float = Field(2.5, ge=0, le=5, description="the resting face reads at most this intensity above the population's")
    baseline_min_frames: int = Field(5, ge=1, description="a face seen in fewer analysed frames gets no baseline of its own")
    expression_classifier: bool = Field(True, description="run the facial-expression classifier on the peak face")
    refine: bool = Field(True, description="search every frame around the best sampled candidates")
    refine_candidates: int = Field(8, ge=1, le=32, description="at most this many sampled frames are refined")
    refine_tolerance: float = Field(
        0.05, ge=0, le=1, description="refine around sampled frames scoring within this fraction of the best held score found"
    )
    peak_frame_max_side: int = Field(1024, ge=64, description="longest side of the stored peak frame")
    face_crop_size: int = Field(224, ge=32, description="side of the stored aligned face crop")

    @model_validator(mode="after")
    def _aus_known(self) -> "FacesConfig":
        from merr_builder.facs import AU_NAMES

        unknown = [au for au in self.exclude_aus if au not in AU_NAMES]
        if unknown:
            raise ValueError(f"exclude_aus has unknown AUs {unknown}; known: {', '.join(AU_NAMES)}")
        if self.backend == "openface" and self.openface_dir is None:
            raise ValueError("backend openface needs openface_dir (the folder of OpenFace CSVs)")
        return self


class SpeechConfig(_Section):
    """Transcripts (ASR or sidecar files) and audio tone cues."""

    unkeyed = frozenset({"batch_size"})  # a batch decodes each clip as it is decoded alone (tests/speech/test_batching.py)

    backend: Literal["faster_whisper", "openai_whisper", "none"] = Field(
        "faster_whisper", description="ASR; none: sidecar transcripts only"
    )
    model_dir: Path | None = Field(None, description="faster-whisper model folder; default: pinned Whisper base")
    openai_model: str = Field("base", description="openai-whisper model name (already downloaded) or checkpoint")
    openai_download_root: Path | None = Field(None, description="where openai-whisper's named models lie")
    language: str | None = Field(None, description="ISO 639-1 code to force (MER2023: zh); None: detect")
    translate: bool = Field(False, description="transcribe into English only (the transcript in its own language is lost)")
    whisper_english: bool = Field(
        True, description="where the speech is not English, also decode Whisper's English translation (translate.backend whisper)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="faster-whisper's device; auto: a GPU where CTranslate2 sees one (resolved where the stage runs)"
    )
    compute_type: str = Field(
        "auto", description="CTranslate2 compute type; auto: int8 on the CPU, float16 on a GPU (or int8_float16, bfloat16, float32, ...)"
    )
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="clips transcribed side by side, their model calls batched; auto: 1 on the CPU, 32 on a GPU (faster-whisper only)"
    )
    vad: bool = Field(True, description="voice-activity detection before ASR")
    beam_size: int = Field(5, ge=1, le=10, description="5: Whisper's default; 1 (greedy) is about 10 % faster")
    temperature_fallback: bool = Field(
        False, description="re-decode doubtful segments at higher temperatures (Whisper's default; slower)"
    )
    sidecar: Literal["prefer", "ignore"] = Field("prefer", description="a sidecar transcript wins over ASR")
    sidecar_encoding: str | None = Field(
        None, description="the encoding every sidecar file is in (e.g. gb18030); None: UTF-8, else found per file (merr_builder/text.py)"
    )
    sidecar_max_bytes: int = Field(
        256_000, ge=1, description="a larger sidecar file is this clip's error (a clip's subtitles are a few kB; an hour of SRT ~100 kB)"
    )

    @model_validator(mode="after")
    def _language_code(self) -> "SpeechConfig":
        if self.language is not None and not (2 <= len(self.language) <= 3 and self.language.isalpha()):
            raise ValueError(f"language must be an ISO 639-1 code like 'zh' or 'en', got {self.language!r}")
        return self


class AnnotateConfig(_Section):
    """Coarse and fine-grained annotations."""

    au_filter: bool = Field(
        True, description="the paper's AU filter: a clip without a given label whose peak matches no AU prototype leaves the coarse set (no_au_match); off: it stays as neutral"
    )
    require_label_agreement: bool = Field(
        False, description="a pseudo-labelled clip also leaves the coarse set when the expression classifier disagrees (label_disagreement)"
    )
    fine_backend: Literal["smollm2", "transformers", "openai", "none"] = Field(
        "smollm2",
        description="smollm2: the pinned offline model; transformers: model_dir; openai: server_url + server_model; none: skip",
    )
    model_dir: Path | None = Field(None, description="a local Hugging Face causal LM folder (transformers)")
    server_url: str | None = Field(None, description="an OpenAI-compatible server's base URL, e.g. http://host:8000/v1 (openai)")
    server_model: str | None = Field(None, description="the model name the server knows (openai)")
    concurrency: int = Field(
        256, ge=1, le=4096, description="requests in flight at once (openai): a batching server (vLLM, SGLang) needs hundreds to fill a GPU"
    )
    timeout_s: float = Field(120.0, gt=0, description="per request (openai)")
    max_retries: int = Field(4, ge=0, description="retries with exponential backoff on connection errors, 429 and 5xx (openai)")
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="prompts per batch (transformers, smollm2); auto: 16 on the CPU, on a GPU what the free memory holds (up to 1,024)"
    )
    decode_attention: Literal["masked", "row_length"] = Field(
        "masked",
        description="greedy decoding's attention over the KV cache (transformers, smollm2). masked: every slot of the "
        "cache under each row's mask; row_length: only the cache blocks each row holds (FlexAttention, compiled on "
        "first use); the same tokens either way (tests/annotate/test_llm_hf.py)",
    )
    fuse_elementwise: bool = Field(
        False,
        description="greedy decoding (transformers, smollm2): the decoder layers' RMSNorms, RoPE and SwiGLU activation run "
        "as fused kernels compiled by torch.compile on first use (tens of seconds; on the CPU it needs a C++ compiler); "
        "the same tokens in float32 (tests/annotate/test_llm_hf.py), in bf16 but for rare near-ties",
    )
    fp8: bool = Field(
        False,
        description="transformers, smollm2 on a GPU of compute capability 8.9 or more (L40S, H100, H200): FP8 weights and "
        "per-token FP8 activations in the decoder's linear layers (torchao: the fp8 extra, pip install -e '.[fp8]'): about half the bytes "
        "and twice the matmul rate, answers not token-identical to bf16 (cached and keyed apart)",
    )
    max_new_tokens: int = Field(
        256, ge=8, le=4096,
        description="length limit of one fine answer; an answer that reaches it keeps its full sentences. 256 tokens hold "
        "about 190 words (1.35 tokens a word on the paper's example), near the 200 words the trainer keeps of a target",
    )
    temperature: float = Field(0.0, ge=0, le=2, description="0: greedy")
    neutral_fraction: float = Field(0.1, ge=0, le=1, description="neutral samples added, as a share of the others")
    seed: int = 0
    objective_backend: Literal["measured", "openai"] = Field(
        "measured",
        description="visual objective description. measured: a factual sentence from the build's measurements; "
        "openai: a vision-language model behind objective_server_url shown the peak frame",
    )
    objective_server_url: str | None = Field(None, description="an OpenAI-compatible server with a vision model (openai)")
    objective_server_model: str | None = Field(None, description="the vision model's name on that server (openai)")
    objective_max_new_tokens: int = Field(48, ge=8, le=512, description="length limit of one description")

    def in_process(self) -> bool:
        """Whether the fine step's LLM runs in this process (its own model, on this worker's GPU if any)."""
        return self.fine_backend in ("smollm2", "transformers")

    @model_validator(mode="after")
    def _model_given(self) -> "AnnotateConfig":
        if self.fine_backend == "transformers" and self.model_dir is None:
            raise ValueError("fine_backend transformers needs model_dir (a local model folder)")
        if self.fine_backend == "openai" and not (self.server_url and self.server_model):
            raise ValueError("fine_backend openai needs server_url and server_model")
        if self.fp8 and not self.in_process():
            raise ValueError("fp8 applies to the in-process backends (smollm2, transformers); a server quantizes its own model")
        if self.objective_backend == "openai" and not (self.objective_server_url and self.objective_server_model):
            raise ValueError("objective_backend openai needs objective_server_url and objective_server_model")
        return self


class TranslateConfig(_Section):
    """English beside the source: `transcript_en` for every clip (MERR's subtitles are English)."""

    backend: Literal["whisper", "llm", "none"] = Field(
        "whisper",
        description="whisper: the ASR model's own translation (speech.whisper_english); llm: the annotate LLM "
        "(annotate.fine_backend) translates the transcript, far better with an 8B instruct model; none: English transcripts only",
    )
    max_new_tokens: int = Field(192, ge=16, le=2048, description="length limit of one translation (llm)")


class EncodeConfig(_Section):
    """Pooled features from local encoder checkpoints (the `encoders` step; `merr encode` sets these)."""

    image_encoder: Path | None = Field(None, description="local image model (ViT, CLIP, MAE, …) on the main face over the clip, averaged → feat_face")
    video_encoder: Path | None = Field(None, description="local VideoMAE model on the K frames → feat_video")
    audio_encoder: Path | None = Field(None, description="local HuBERT / wav2vec 2.0 model on the 16 kHz audio → feat_audio")
    vision_tower: Path | None = Field(None, description="local vision model (CLIP, SigLIP, ViT): the peak frame's patch tokens → vision_patches (float16)")
    batch_size: int = Field(16, ge=1, description="rows per encoder call")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda where there is one")


class ShardConfig(_Section):
    """The Parquet shards."""

    max_shard_mb: float = Field(512.0, gt=0, description="start a new shard once a file reaches this size")
    row_group_mb: float = Field(32.0, gt=0, description="row groups close at about this many bytes")
    zstd_level: int = Field(3, ge=1, le=22)


class SplitConfig(_Section):
    """Deterministic split by a hash of the clip id, so a clip keeps its split across rebuilds."""

    val_fraction: float = Field(0.0, ge=0, le=1)
    test_fraction: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _fractions_fit(self) -> "SplitConfig":
        if self.val_fraction + self.test_fraction > 1:
            raise ValueError("val_fraction + test_fraction must not exceed 1")
        return self


class RunConfig(_Section):
    """Orchestration: how partitions are formed and where their tasks run."""

    partition_size: int = Field(256, ge=1, description="clips per partition (one task per stage and partition)")
    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: int | None = Field(None, ge=1, description="threads for the local runner; default: CPU count")
    dask_address: str | None = Field(None, description="scheduler address of an existing Dask cluster")
    retries: int = Field(1, ge=0, description="Prefect retries of a failed partition task")
    gpu_stages: tuple[str, ...] = Field(
        (),
        description="more stages or steps whose tasks ask Dask for resource GPU=1, besides the steps that declare "
        "a GPU (start GPU workers with --resources GPU=1)",
    )


class BuildConfig(_Section):
    ingest: IngestConfig = IngestConfig()
    media: MediaConfig = MediaConfig()
    faces: FacesConfig = FacesConfig()
    speech: SpeechConfig = SpeechConfig()
    translate: TranslateConfig = TranslateConfig()
    annotate: AnnotateConfig = AnnotateConfig()
    encode: EncodeConfig = EncodeConfig()
    shards: ShardConfig = ShardConfig()
    split: SplitConfig = SplitConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _translator_there(self) -> "BuildConfig":
        if self.translate.backend == "llm" and self.annotate.fine_backend == "none":
            raise ValueError("translate.backend llm translates with the annotate LLM; annotate.fine_backend is none")
        if self.translate.backend == "whisper" and not self.speech.whisper_english and not self.speech.translate:
            raise ValueError("translate.backend whisper needs speech.whisper_english (or choose llm or none)")
        return self


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} does not parse: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {assignment!r} is not of the form section.field=value")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw.strip() else None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"config field '{field}': {err['msg']}{got}")
    return "; ".join(lines)


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> BuildConfig:
    """File (YAML or TOML) first, then `section.field=value` overrides; validated before returning."""
    return config_from_dict(_read_file(path) if path is not None else {}, overrides)


# Settings that moved to the section of the stage that uses them: (old section, field) → new section.
MOVED = {("media", "sample_fps"): "faces", ("media", "every_frame"): "faces"}


def _move_old_settings(data: dict[str, Any]) -> None:
    """Config files, overrides and manifests of older builds may still name a moved setting where it was."""
    for (old, name), new in MOVED.items():
        section = data.get(old)
        if isinstance(section, dict) and name in section:
            value = section.pop(name)
            data.setdefault(new, {})[name] = value
            warnings.warn(f"config field '{old}.{name}' is now '{new}.{name}' (read as that; rename it)", FutureWarning, stacklevel=3)


def config_from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> BuildConfig:
    """A config from a mapping (e.g. the one a manifest records) plus overrides; validated."""
    data = json.loads(json.dumps(data))  # a deep copy that overrides may change
    _move_old_settings(data)  # (the file's, so that an override of the new name wins over it)
    for assignment in overrides:
        _apply_override(data, assignment)
    _move_old_settings(data)
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def config_as_json(config: BuildConfig) -> dict[str, Any]:
    return json.loads(config.model_dump_json())
