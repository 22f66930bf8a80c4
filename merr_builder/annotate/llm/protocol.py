"""The LLM backend protocol: chat requests in, completions out, in the caller's order."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class ChatRequest:
    system: str
    user: str
    image_jpeg: bytes | None = None  # shown before the text, to backends that accept images

    def messages(self) -> list[dict]:
        """OpenAI chat messages; an image travels as a JPEG data URL, the form every vision server accepts."""
        if self.image_jpeg is None:
            user: str | list[dict] = self.user
        else:
            url = "data:image/jpeg;base64," + base64.b64encode(self.image_jpeg).decode("ascii")
            user = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": self.user}]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def identity(self) -> dict[str, str]:
        """What makes two requests the same question (the image by its hash), for the answer cache; a
        text-only request keeps the form older caches used."""
        identity = {"system": self.system, "user": self.user}
        if self.image_jpeg is not None:
            identity["image_sha256"] = hashlib.sha256(self.image_jpeg).hexdigest()
        return identity


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 160
    temperature: float = 0.0  # 0: greedy (the default: reproducible annotations)
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop", "length" (cut off at max_new_tokens) or "error" (never cached)
    new_tokens: int
    error: str | None = None  # why this request got no answer (finish_reason "error")


# Called with (request index, completion) as each answer arrives, so the caller can store it at once.
OnAnswer = Callable[[int, Completion], None]


class LLMBackend(Protocol):
    name: ClassVar[str]

    def generate(self, requests: list[ChatRequest], settings: GenerationSettings, on_answer: OnAnswer | None = None) -> list[Completion]:
        """One completion per request, in the order given; `on_answer` sees each one as soon as it is there
        (from the calling thread)."""
        ...

    def model_id(self) -> dict[str, str]:
        """Model name, file and hash, for the provenance of every caption."""
        ...
