"""The preflight: every setting that can be checked before any work is checked, so a build that would
fail at its tenth minute (a model missing, a dead LLM server, an output folder that cannot be written)
fails in its first second instead, with one line, no traceback, and nothing left behind: no output
folder, no lock file.

Checked: the build input (found and its CSV files read: ingest.discover), the output folder (not a file, not under one, writable),
the units named in run.gpu_stages, every model a stage or step of this config would use (present, its
pinned hash; an LLM folder loadable; an LLM server answering /v1/models), the speech language (one the
ASR model knows; its form is checked when the config is read).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from merr_builder.config import BuildConfig, ConfigError
from merr_builder.ingest import discover
from merr_builder.names import path_text
from merr_builder.pipeline import CORPUS_STEPS, STAGES, UNITS


def check_output_folder(out_dir: Path) -> None:
    """The output folder is a folder, or can be made as one, and can be written; ConfigError otherwise."""
    out_dir = Path(out_dir).expanduser().absolute()
    shown = path_text(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {shown} is a file, not a folder")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {shown} lies under {path_text(existing)}, which is a file")
    try:  # tried, not predicted: permissions, a read-only file system, /proc, a full disk, root squash
        os.rmdir(tempfile.mkdtemp(prefix=".merr-preflight-", dir=existing))
    except OSError as exc:
        raise ConfigError(f"--out {shown}: nothing can be written in {path_text(existing)} ({exc.strerror})") from None


def check_language(config: BuildConfig) -> None:
    from merr_builder.speech.stage import supported_languages

    known = supported_languages(config.speech)
    if config.speech.language is not None and known is not None and config.speech.language not in known:
        raise ConfigError(f"speech.language {config.speech.language!r} is not a language {config.speech.backend} knows "
                          f"(ISO 639-1 codes such as {', '.join(sorted(known)[:12])}, …)")  # fmt: skip


def check_units(config: BuildConfig) -> None:
    unknown = sorted(set(config.run.gpu_stages) - set(UNITS))
    if unknown:
        raise ConfigError(f"config field 'run.gpu_stages': no stage or step named {', '.join(unknown)} (they are: {', '.join(UNITS)})")


def check_models(config: BuildConfig, servers: bool = True) -> None:
    """Every model this config uses is there (and is the pinned one), and with `servers` every LLM server
    answers; ConfigError naming the unit otherwise. (`merr annotate` skips the servers: a regeneration
    may take every answer from the answer cache, and then needs no server.)"""
    if config.annotate.fine_backend == "transformers":
        check_llm_folder(config.annotate.model_dir, "annotate.model_dir")
    if servers:
        check_servers(config)
    for unit in (*STAGES, *CORPUS_STEPS):
        try:
            unit.models(config)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 (an asset, a file, a server: each unit's own errors, named)
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"the {unit.name} {'stage' if unit in STAGES else 'step'} cannot find its model: {message}") from None


def check_servers(config: BuildConfig) -> None:
    """Every OpenAI-compatible server the config names answers `GET /models`."""
    from merr_builder.annotate.llm.openai_server import LLMServerError, OpenAIServerLLM

    named = {"annotate.server_url": config.annotate.fine_backend == "openai" and config.annotate.server_url,
             "annotate.objective_server_url": config.annotate.objective_backend == "openai" and config.annotate.objective_server_url}  # fmt: skip
    for field, url in named.items():
        if url:
            try:
                OpenAIServerLLM.check_server(url)
            except LLMServerError as exc:
                raise ConfigError(f"{field}: {exc}") from None


def check_llm_folder(folder: Path | None, field: str) -> None:
    """A local Hugging Face causal LM folder: there, with a config transformers reads and weights."""
    if folder is None:
        raise ConfigError(f"{field} is not set (the transformers backend needs a local model folder)")
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{field} {path_text(folder)} is not a folder")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ConfigError(f"{field} {path_text(folder)} holds no weights (*.safetensors or *.bin)")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 (transformers' own: OSError, ValueError, KeyError …)
        raise ConfigError(f"{field} {path_text(folder)} is not a model transformers can load ({' '.join(str(exc).split())[:200]})") from None


def preflight(input_path: Path, out_dir: Path, config: BuildConfig) -> None:
    """Everything a build can check before it starts; raises InputError or ConfigError (exit 2)."""
    discover(Path(input_path), config.ingest)  # the input, its manifest, label and transcript files read (cheap)
    check_output_folder(Path(out_dir))
    check_units(config)
    check_language(config)
    check_models(config)
