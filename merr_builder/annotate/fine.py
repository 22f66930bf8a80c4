"""Fine-grained annotation: the paper's prompt, with the label given, through an LLM backend; every
answer checked before it becomes a `fine_caption`, and the reason written to `fine_status` otherwise.

Selection follows the paper: samples whose AU evidence disagrees with their label are not sent; neutral
samples are added at random (the coarse recipe had none) up to `neutral_fraction` of the others.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from merr_builder.annotate.checks import NearDuplicates, check_answer
from merr_builder.annotate.llm.cache import cached_answers
from merr_builder.annotate.llm.protocol import ChatRequest, GenerationSettings, LLMBackend
from merr_builder.annotate.prompts import FINE_QUESTION, FINE_SYSTEM
from merr_builder.config import AnnotateConfig


def make_llm(config: AnnotateConfig) -> LLMBackend | None:
    if config.fine_backend == "none":
        return None
    if config.fine_backend == "openai":
        from merr_builder.annotate.llm.openai_server import server_from_config

        return server_from_config(config, config.server_url, config.server_model)  # type: ignore[arg-type]
    from merr_builder.annotate.llm.hf import TransformersLLM
    from merr_builder.assets import smollm2_dir

    rows = None if config.batch_size == "auto" else config.batch_size
    model_dir = smollm2_dir() if config.fine_backend == "smollm2" else config.model_dir
    return TransformersLLM(model_dir, batch_size=rows, decode_attention=config.decode_attention,
                           fuse_elementwise=config.fuse_elementwise, fp8=config.fp8)  # fmt: skip


def llm_model_id(config: AnnotateConfig) -> dict[str, str] | None:
    """The fine step's model (name, file, sha256) without loading it: its cache key and its manifest entry."""
    if config.fine_backend == "none":
        return None
    if config.fine_backend == "openai":
        from merr_builder.annotate.llm.openai_server import OpenAIServerLLM

        return OpenAIServerLLM.server_model_id(config.server_url, config.server_model)  # type: ignore[arg-type]
    from merr_builder.annotate.llm.hf import weights_id
    from merr_builder.assets import smollm2_dir

    return weights_id(smollm2_dir() if config.fine_backend == "smollm2" else config.model_dir, config.fp8)  # type: ignore[arg-type]


def _stable_fraction(clip_id: str, seed: int) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()[:8], "big") / 2**64


def select(rows: list[dict], config: AnnotateConfig) -> dict[str, str | None]:
    """clip_id → None when the row goes to the LLM, else why it does not."""
    status: dict[str, str | None] = {}
    candidates = []
    neutrals = []
    for row in rows:
        if not row.get("label"):
            status[row["clip_id"]] = "not selected: no label"
        elif "disagrees" in (row.get("label_source") or ""):
            status[row["clip_id"]] = "not selected: the label disagrees with the AU evidence"
        elif row["label"] == "neutral":
            neutrals.append(row["clip_id"])
        else:
            candidates.append(row["clip_id"])
            status[row["clip_id"]] = None
    quota = math.ceil(config.neutral_fraction * len(candidates)) if candidates else len(neutrals)
    chosen = set(sorted(neutrals, key=lambda c: _stable_fraction(c, config.seed))[:quota])
    for clip_id in neutrals:
        status[clip_id] = None if clip_id in chosen else "not selected: neutral beyond the top-up quota"
    return status


def fine_annotations(
    rows: list[dict], llm: LLMBackend | None, config: AnnotateConfig, cache_path: Path
) -> dict[str, tuple[str | None, str, bool | None]]:
    """clip_id → (fine_caption or None, fine_status, whether the answer reached the token limit; None
    where nothing was generated) for every row (clip_id, coarse_caption, label, label_source)."""
    if llm is None:
        return {row["clip_id"]: (None, "not generated: no LLM backend (annotate.fine_backend none)", None) for row in rows}
    status = select(rows, config)
    todo = [row for row in sorted(rows, key=lambda r: r["clip_id"]) if status[row["clip_id"]] is None]
    settings = GenerationSettings(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
    requests = [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=r["coarse_caption"], label=r["label"])) for r in todo]
    answers = cached_answers(requests, llm, settings, cache_path)
    out: dict[str, tuple[str | None, str, bool | None]] = {r["clip_id"]: (None, s, None) for r in rows if (s := status[r["clip_id"]])}
    kept = NearDuplicates()
    for row, answer in zip(todo, answers):
        if answer.error is not None:
            out[row["clip_id"]] = (None, f"failed: the LLM gave no answer ({answer.error})", None)
            continue
        verdict, caption = check_answer(answer, row["label"])
        if caption is not None and (twin := kept.twin(caption)) is not None:
            verdict, caption = f"rejected: near-duplicate of {twin}", None
        if caption is not None:
            kept.add(row["clip_id"], caption)
        out[row["clip_id"]] = (caption, verdict, answer.finish_reason == "length")
    return out
