"""The visual objective description: what the peak frame shows.

The authors showed the complete peak frame to MiniGPT-v2. Here any vision-language model behind an
OpenAI-compatible server does it (vLLM, SGLang, `transformers serve` with a local VLM folder), through the
same backend and answer cache as the fine step. Without one, or where an answer is unusable, the row keeps
the factual sentence built from the build's measurements (`coarse.objective_description`), and its
provenance says which it got and why.
"""

from __future__ import annotations

import re
from pathlib import Path

from merr_builder.annotate.llm.cache import cached_answers
from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings, LLMBackend
from merr_builder.annotate.prompts import OBJECTIVE_PROMPT_VERSION, OBJECTIVE_QUESTION, OBJECTIVE_SYSTEM
from merr_builder.config import AnnotateConfig

MEASURED = "measured facts (no VLM)"
# The answer completes "This person in the video is ..."; a model that repeats the opening has it cut off.
_OPENING = re.compile(r"^\s*(this|the) person in the video is\s+", re.IGNORECASE)
MAX_CHARS = 300


def make_vlm(config: AnnotateConfig) -> LLMBackend | None:
    if config.objective_backend == "measured":
        return None
    from merr_builder.annotate.llm.openai_server import server_from_config

    return server_from_config(config, config.objective_server_url, config.objective_server_model)  # type: ignore[arg-type]


def clean_description(completion: Completion) -> tuple[str | None, str]:
    """(the clause to put into the template, or None) and why not, from one VLM answer."""
    text = " ".join(completion.text.split()).strip(" \"'")
    text = _OPENING.sub("", text).rstrip(" .")
    if completion.error is not None:
        return None, f"the VLM gave no answer ({completion.error})"
    if completion.finish_reason == "length":
        return None, "the VLM answer was cut off at objective_max_new_tokens"
    if not text:
        return None, "the VLM answer was empty"
    if len(text) > MAX_CHARS:
        return None, f"the VLM answer was longer than {MAX_CHARS} characters"
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]  # it continues a sentence
    return text, ""


def describe_peak_frames(
    frames: dict[str, bytes], vlm: LLMBackend, config: AnnotateConfig, cache_path: Path
) -> dict[str, tuple[str | None, str]]:
    """clip_id → (description or None, its source for the provenance) for each peak frame JPEG given."""
    settings = GenerationSettings(max_new_tokens=config.objective_max_new_tokens, temperature=config.temperature, seed=config.seed)
    clip_ids = sorted(frames)
    requests = [ChatRequest(OBJECTIVE_SYSTEM, OBJECTIVE_QUESTION, image_jpeg=frames[c]) for c in clip_ids]
    answers = cached_answers(requests, vlm, settings, cache_path)
    described = f"VLM {vlm.model_id()['name']} ({OBJECTIVE_PROMPT_VERSION})"
    out: dict[str, tuple[str | None, str]] = {}
    for clip_id, answer in zip(clip_ids, answers):
        text, why_not = clean_description(answer)
        out[clip_id] = (text, described) if text else (None, f"{MEASURED}: {why_not}")
    return out
