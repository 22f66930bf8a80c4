"""The LLM backend protocol: chat requests in, completions out, in the caller's order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class ChatRequest:
    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 160
    temperature: float = 0.0  # 0: greedy (the default: reproducible annotations)
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" or "length" (cut off at max_new_tokens)
    new_tokens: int


class LLMBackend(Protocol):
    name: ClassVar[str]

    def generate(self, requests: list[ChatRequest], settings: GenerationSettings) -> list[Completion]:
        """One completion per request, in the order given."""
        ...

    def model_id(self) -> dict[str, str]:
        """Model name, file and hash, for the provenance of every caption."""
        ...
