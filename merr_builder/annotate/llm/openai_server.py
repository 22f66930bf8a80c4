"""OpenAI-compatible server backend: vLLM, SGLang, `transformers serve`, or any server speaking
`/v1/chat/completions`, through the official `openai` client.

Requests run concurrently up to `concurrency` at a time (the server batches them); each has a timeout,
and the client retries connection errors, 408/409/429 and 5xx answers with exponential backoff
(`max_retries`). Answers come back in the caller's order. A request that still fails raises
`LLMServerError` naming the server and the cause; the fine step records nothing for the batch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings, OnAnswer

if TYPE_CHECKING:
    from merr_builder.config import AnnotateConfig


class LLMServerError(RuntimeError):
    """The server could not be reached or did not answer usefully."""


class OpenAIServerLLM:
    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 16,
                 timeout_s: float = 120.0, max_retries: int = 4) -> None:  # fmt: skip
        from openai import OpenAI

        self.base_url, self.model, self.concurrency = base_url.rstrip("/"), model, concurrency
        # Local servers ignore the key; the client insists on one.
        key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self.client = OpenAI(base_url=self.base_url, api_key=key, timeout=timeout_s, max_retries=max_retries)

    def model_id(self) -> dict[str, str]:
        return self.server_model_id(self.base_url, self.model)

    @staticmethod
    def check_server(base_url: str, timeout_s: float = 10.0) -> None:
        """The server answers `GET /models` (every OpenAI-compatible server does); LLMServerError otherwise.
        The preflight asks it before a build starts, so a dead server fails the build in its first second."""
        import httpx

        url = base_url.rstrip("/") + "/models"
        try:
            response = httpx.get(url, timeout=timeout_s, headers={"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY') or 'not-needed'}"})
        except httpx.HTTPError as exc:
            raise LLMServerError(f"the LLM server at {base_url} does not answer ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise LLMServerError(f"the LLM server at {base_url} answers GET /models with HTTP {response.status_code}")

    @staticmethod
    def server_model_id(base_url: str, model: str) -> dict[str, str]:
        # The weights live on the server: name and address are what this side can vouch for.
        return {"name": model, "file": base_url.rstrip("/"), "sha256": ""}

    def generate(self, requests: list[ChatRequest], settings: GenerationSettings, on_answer: OnAnswer | None = None) -> list[Completion]:
        if not requests:
            return []
        results: list[Completion | None] = [None] * len(requests)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            futures = {pool.submit(self._one, request, settings): i for i, request in enumerate(requests)}
            try:
                for future in as_completed(futures):  # in the calling thread, as each answer arrives
                    results[futures[future]] = future.result()
                    if on_answer is not None:
                        on_answer(futures[future], results[futures[future]])  # type: ignore[arg-type]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results  # type: ignore[return-value]

    def _one(self, request: ChatRequest, settings: GenerationSettings) -> Completion:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=request.messages(),  # type: ignore[arg-type]
                max_tokens=settings.max_new_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                seed=settings.seed,
            )
        except openai.APIConnectionError as error:
            raise LLMServerError(f"LLM server {self.base_url}: cannot connect ({error})") from error
        except openai.APIStatusError as error:
            raise LLMServerError(f"LLM server {self.base_url}: HTTP {error.status_code}: {error.message}") from error
        if not response.choices:
            raise LLMServerError(f"LLM server {self.base_url}: an answer with no choices")
        choice = response.choices[0]
        text = (choice.message.content or "").strip()
        new_tokens = response.usage.completion_tokens if response.usage else len(text.split())
        return Completion(text, "length" if choice.finish_reason == "length" else "stop", new_tokens)


def server_from_config(config: AnnotateConfig, base_url: str, model: str) -> OpenAIServerLLM:
    """A server backend with the annotate section's concurrency, timeout and retries (fine step, VLM step)."""
    return OpenAIServerLLM(base_url, model, concurrency=config.concurrency, timeout_s=config.timeout_s, max_retries=config.max_retries)
