"""`merr export hf`: a trained checkpoint as a plain Hugging Face model folder plus the projectors.

The folder loads with `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` (the
LoRA merged into the base weights, no peft needed); beside the weights:

- `projectors.safetensors`: each feature stream's Linear (`<stream>.weight`, `<stream>.bias`);
- `emotion_llama.json`: what turns a clip into the model's input: the prompt template, the streams in
  order with their slot (`<VideoHere>` / `<FeatureHere>`), token count and input width, the feature
  statistics every vector stream is standardised with, and the global stream's vision tower (folder,
  weights hash, merge, patches) — the tower itself is not copied (it is frozen and public).

Users of the original ask for exactly this (Emotion-LLaMA issue #115): the released `.pth` holds LoRA and
projector weights only, loadable only through its own MiniGPT-v2 code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from merr_builder.finished_build import ExportError, fresh_folder
from merr_builder.tasks import FEATURE_SLOT, VIDEO_SLOT
from merr_builder.trainer import checkpoint
from merr_builder.trainer.features import STREAMS

PROJECTORS, DESCRIPTION = "projectors.safetensors", "emotion_llama.json"
PROMPT = f"[INST] <video>{VIDEO_SLOT}</video> <feature>{FEATURE_SLOT}</feature> The person in video says: {{sentence}}. [{{task}}] {{instruction}} [/INST]"


@dataclass
class HFExport:
    folder: Path
    parameters: int
    streams: list[str]


def export_hf(path: Path, to: Path, dtype: str = "float32") -> HFExport:
    """Merge the checkpoint's LoRA into its base and write the folder (an earlier export there is replaced)."""
    from merr_builder.trainer.train import load_trained

    source = checkpoint.resolve(path)
    target = Path(to).resolve()
    if target == Path(source).resolve() or target in Path(source).resolve().parents:
        raise ExportError(f"the export target {to} holds the checkpoint {source}; write the export somewhere else")
    model, scaler, meta = load_trained(source, "cpu", vision_source="frame")
    merged = model.lm.merge_and_unload()
    with fresh_folder(Path(to), "hf") as temp:
        merged.to(getattr(torch, dtype)).save_pretrained(temp)
        model.tokenizer.save_pretrained(temp)
        save_file({f"{stream}.{name}": tensor.detach().float().contiguous() for stream, projector in model.projectors.items()
                   for name, tensor in projector.state_dict().items()}, str(temp / PROJECTORS))  # fmt: skip
        counts, dims = model.prompts.counts, scaler.dims
        description = {
            "format": "merr_builder emotion-llama 1",
            "checkpoint": str(source),
            "step": meta["step"],
            "base_model": meta["model_dir"],
            "prompt": PROMPT,
            "streams": [{"name": s, "slot": STREAMS[s].slot, "tokens": counts[s], "input_width": dims[s], "columns": list(STREAMS[s].columns)}
                        for s in model.streams],  # fmt: skip
            "feature_stats": {k: {"mean": m, "std": sd} for k, (m, sd) in scaler.state().items()},
            "vision": {k: v for k, v in (meta.get("vision") or {}).items() if k != "source"} or None,
            "lora": {k: meta["config"][k] for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")},
        }
        (temp / DESCRIPTION).write_text(json.dumps(description, indent=1) + "\n")
    return HFExport(Path(to), sum(p.numel() for p in merged.parameters()), list(model.streams))
