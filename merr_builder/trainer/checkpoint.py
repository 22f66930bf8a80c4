"""Checkpoints: the trainable weights (LoRA and projectors, safetensors) and everything an exact resume
needs (optimizer, scheduler, RNG states, data position, step, feature statistics, the config), in one
folder published atomically; `latest` names the newest."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

WEIGHTS, STATE, META = "trainable.safetensors", "state.pt", "checkpoint.json"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, weights: dict[str, torch.Tensor], state: dict, meta: dict) -> Path:
    folder = Path(folder)
    temp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(temp / WEIGHTS))
    torch.save(state, temp / STATE)
    (temp / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    temp.rename(folder)
    latest = folder.parent / "latest"
    latest_temp = folder.parent / ".latest.partial"
    latest_temp.write_text(folder.name + "\n")
    latest_temp.rename(latest)
    return folder


def resolve(path: Path) -> Path:
    """A checkpoint folder, or a run folder whose `latest` names one."""
    path = Path(path)
    if (path / META).exists():
        return path
    if (path / "latest").exists():
        return path / (path / "latest").read_text().strip()
    raise FileNotFoundError(f"{path} is neither a checkpoint (no {META}) nor a run folder with a 'latest' checkpoint")


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    folder = resolve(path)
    meta = json.loads((folder / META).read_text())
    state = torch.load(folder / STATE, weights_only=False)  # our own file: optimizer and RNG states
    return load_file(str(folder / WEIGHTS)), state, meta
