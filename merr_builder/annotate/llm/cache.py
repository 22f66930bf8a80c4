"""LLM answers cached by (request, model, settings): a rerun or a regeneration costs nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings


class AnswerCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, completion TEXT NOT NULL)")

    @staticmethod
    def key(request: ChatRequest, model: dict[str, str], settings: GenerationSettings) -> str:
        blob = json.dumps([asdict(request), model.get("sha256") or model.get("name"), asdict(settings)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT completion FROM answers WHERE key = ?", (key,)).fetchone()
        return Completion(**json.loads(row[0])) if row else None

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(asdict(completion))))
        self._db.commit()

    def close(self) -> None:
        self._db.close()
