"""Clips transcribed side by side, their Whisper model calls sent to the model in batches.

On a GPU one clip's window leaves the model mostly idle: a call is a few milliseconds of work whatever
the batch, so the speed is in decoding many clips' windows at once. faster-whisper batches only the
chunks of one long file (`BatchedInferencePipeline`, one language, no seek loop), which gives MERR's
short clips nothing. Rather than rewrite its per-clip decoding (language detection, the seek loop over
timestamps, temperature fallback, word alignment), the clips are transcribed by that same code in
threads, and the model object the threads call (`ctranslate2.models.Whisper`) is wrapped in
`BatchingWhisper`: a call waits until every thread transcribing a clip has made one, then the calls of
one kind and the same settings go to the model as one batch. CTranslate2 computes each row of a batch
alone (every window is padded to 30 s, every prompt of a group has the same length), so each clip gets
the words and timings it gets on its own; the test compares them.

A thread that is not transcribing inside `CallBatcher.member()` calls the model directly, so the wrapper
costs the per-clip path nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Call:
    key: Hashable  # calls with equal keys go to the model together
    request: Any
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class CallBatcher:
    """A rendezvous of threads: `call` blocks until every member thread is blocked in `call`, then the
    waiting calls are run, grouped by key, by `run_group(key, requests) -> results` (one result per
    request, in order). A group whose batch fails is run again call by call, so an error reaches only the
    thread whose call caused it."""

    run_group: Callable[[Hashable, list[Any]], list[Any]]
    _condition: threading.Condition = field(default_factory=threading.Condition)
    _members: int = 0
    _pending: list[_Call] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local)
    batches: int = 0  # model calls made for members, for the benchmark's report
    calls: int = 0

    @contextmanager
    def member(self) -> Iterator[None]:
        """While inside, this thread's calls wait for the other members' and go to the model with them."""
        with self._condition:
            self._members += 1
        self._local.member = True
        try:
            yield
        finally:
            self._local.member = False
            with self._condition:
                self._members -= 1
                self._run_if_all_waiting()  # the others may now all be waiting on this one

    def is_member(self) -> bool:
        return getattr(self._local, "member", False)

    def call(self, key: Hashable, request: Any) -> Any:
        entry = _Call(key, request)
        with self._condition:
            self._pending.append(entry)
            self._run_if_all_waiting()
            while not entry.done:
                self._condition.wait()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _run_if_all_waiting(self) -> None:
        # Under the lock, with every member blocked in `call`: nothing else can reach the model meanwhile,
        # and which calls share a batch depends only on what the members asked, not on timing.
        if not self._pending or len(self._pending) < self._members:
            return
        waiting, self._pending = self._pending, []
        groups: dict[Hashable, list[_Call]] = {}
        for entry in waiting:
            groups.setdefault(entry.key, []).append(entry)
        for key, entries in groups.items():
            self.batches += 1
            self.calls += len(entries)
            try:
                results = self.run_group(key, [e.request for e in entries])
                for entry, result in zip(entries, results, strict=True):
                    entry.result = result
            except Exception:
                for entry in entries:
                    try:
                        entry.result = self.run_group(key, [entry.request])[0]
                    except Exception as exc:  # this call's own error, raised in its own thread
                        entry.error = exc
            for entry in entries:
                entry.done = True
        self._condition.notify_all()


@dataclass(frozen=True)
class EncodedRows:
    """Rows [start, stop) of a batched encoder output: what `BatchingWhisper.encode` gives a caller in
    place of a StorageView, and takes back in the calls that read encodings."""

    batch: Any  # ctranslate2.StorageView of the whole batch
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def _rows_storage(rows: list[EncodedRows]) -> tuple[Any, Any]:
    """One StorageView over the rows, in order, and the array it views (kept alive while it is used).
    Rows that are exactly one whole batch are passed as that batch, without a copy."""
    import ctranslate2

    first = rows[0]
    one_batch = all(r.batch is first.batch for r in rows) and all(a.stop == b.start for a, b in zip(rows, rows[1:]))
    if one_batch and first.start == 0 and rows[-1].stop == first.batch.shape[0]:
        return first.batch, None
    if first.batch.device == "cpu":
        parts = [np.asarray(r.batch)[r.start : r.stop] for r in rows]
        array = parts[0] if len(parts) == 1 else np.concatenate(parts)
    else:  # on a GPU the rows are gathered there (torch reads StorageViews through the CUDA array interface)
        import torch

        parts = [torch.as_tensor(r.batch, device=f"cuda:{r.batch.device_index}")[r.start : r.stop] for r in rows]
        array = parts[0].contiguous() if len(parts) == 1 else torch.cat(parts)
        torch.cuda.current_stream(array.device).synchronize()  # (CTranslate2 reads it on a stream of its own)
    return ctranslate2.StorageView.from_array(array), array


def _features_storage(features: list[Any]) -> tuple[Any, Any]:
    """Mel features of several calls (StorageViews on the CPU, as faster-whisper makes them) as one."""
    import ctranslate2

    array = np.concatenate([np.asarray(f) for f in features])
    return ctranslate2.StorageView.from_array(array), array


class BatchingWhisper:
    """A ctranslate2.models.Whisper whose encode, detect_language, generate and align calls from member
    threads of `batcher` are batched; everything else, and every call from other threads, is the model's."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.batcher = CallBatcher(self._run_group)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    # The four calls, as faster-whisper makes them (batch of one window per call from a clip's thread).

    def encode(self, features: Any, to_cpu: bool = False) -> Any:
        if not self.batcher.is_member():
            return self.model.encode(features, to_cpu=to_cpu)
        return self.batcher.call(("encode", to_cpu, tuple(features.shape[1:])), features)

    def detect_language(self, features: Any) -> list:
        if not isinstance(features, EncodedRows):
            return self.model.detect_language(features)
        return self.batcher.call(("detect_language",), features)

    def generate(self, features: Any, prompts: list, **options: Any) -> list:
        if not isinstance(features, EncodedRows):
            return self.model.generate(features, prompts, **options)
        # Prompts of one group have one length: CTranslate2 starts every row's decoding at the same step.
        key = ("generate", tuple(len(p) for p in prompts), repr(sorted(options.items())))
        return self.batcher.call(key, (features, prompts, options))

    def align(self, features: Any, start_sequence: list[int], text_tokens: list[list[int]], num_frames: Any, median_filter_width: int = 7) -> list:
        if not isinstance(features, EncodedRows):
            return self.model.align(features, start_sequence, text_tokens, num_frames, median_filter_width=median_filter_width)
        frames = list(num_frames) if isinstance(num_frames, (list, tuple)) else [num_frames] * len(text_tokens)
        key = ("align", tuple(start_sequence), median_filter_width)
        return self.batcher.call(key, (features, start_sequence, text_tokens, frames, median_filter_width))

    def _run_group(self, key: Hashable, requests: list[Any]) -> list[Any]:
        kind = key[0]  # type: ignore[index]
        if kind == "encode":
            storage, _array = _features_storage(requests)
            encoded = self.model.encode(storage, to_cpu=key[1])  # type: ignore[index]
            out, start = [], 0
            for features in requests:
                out.append(EncodedRows(encoded, start, start + features.shape[0]))
                start += features.shape[0]
            return out
        rows = [r if kind == "detect_language" else r[0] for r in requests]
        storage, _array = _rows_storage(rows)
        if kind == "detect_language":
            results = self.model.detect_language(storage)
        elif kind == "generate":
            prompts = [p for _, ps, _ in requests for p in ps]
            results = self.model.generate(storage, prompts, **requests[0][2])
        else:  # align
            _, start_sequence, _, _, width = requests[0]
            tokens = [t for _, _, ts, _, _ in requests for t in ts]
            frames = [f for _, _, _, fs, _ in requests for f in fs]
            results = self.model.align(storage, start_sequence, tokens, frames, median_filter_width=width)
        out, start = [], 0
        for r in rows:  # each caller's share of the batch, as the model would have returned it alone
            out.append(results[start : start + len(r)])
            start += len(r)
        return out
