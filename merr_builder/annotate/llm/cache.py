"""LLM answers cached by (request, model, settings): a rerun or a regeneration costs nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings, LLMBackend


class AnswerCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, completion TEXT NOT NULL)")

    @staticmethod
    def key(request: ChatRequest, model: dict[str, str], settings: GenerationSettings) -> str:
        blob = json.dumps([request.identity(), model.get("sha256") or model.get("name"), asdict(settings)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT completion FROM answers WHERE key = ?", (key,)).fetchone()
        return Completion(**json.loads(row[0])) if row else None

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(asdict(completion))))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def cached_answers(requests: list[ChatRequest], llm: LLMBackend, settings: GenerationSettings, path: Path) -> list[Completion]:
    """One completion per request, in order: from the cache where asked before, else from `llm` (in one
    call, so it batches as it likes), each stored as it arrives: an interrupted call loses no stored answer.

    When the call fails, the requests still unanswered are asked one by one, so one request the backend
    cannot take (out of memory, refused by a server) fails alone: its completion has finish_reason
    "error" and the error (not cached, so a rerun asks again). When every one of them fails, the backend
    itself is failing (a dead server): the first error is raised."""
    cache = AnswerCache(path)
    try:
        model = llm.model_id()
        keys = [AnswerCache.key(r, model, settings) for r in requests]
        answers = [cache.get(k) for k in keys]
        missing = [i for i, a in enumerate(answers) if a is None]

        def store(position: int, completion: Completion) -> None:
            cache.put(keys[missing[position]], completion)
            answers[missing[position]] = completion

        try:
            llm.generate([requests[i] for i in missing], settings, on_answer=store)
        except Exception:  # noqa: BLE001 (the backend's own errors: asked again one by one below)
            _one_by_one(requests, answers, keys, llm, settings, cache)
    finally:
        cache.close()
    return answers  # type: ignore[return-value]


def _one_by_one(requests: list[ChatRequest], answers: list[Completion | None], keys: list[str], llm: LLMBackend,
                settings: GenerationSettings, cache: AnswerCache) -> None:  # fmt: skip
    unanswered = [i for i, a in enumerate(answers) if a is None]
    first: Exception | None = None
    for i in unanswered:
        try:
            completion = llm.generate([requests[i]], settings)[0]
        except Exception as exc:  # noqa: BLE001
            first = first or exc
            answers[i] = Completion("", "error", 0, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300])
            continue
        cache.put(keys[i], completion)
        answers[i] = completion
    if first is not None and all(answers[i].finish_reason == "error" for i in unanswered):  # type: ignore[union-attr]
        raise first
