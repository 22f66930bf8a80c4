"""Streaming the build's shards into training samples: pyarrow row groups, a seeded shuffle buffer,
rows split across ranks and loader workers, batches of similar length, and a position to resume from.

Every (rank, worker) reads the row groups in the same seeded order per epoch and keeps every N-th row
(N = ranks × workers), so ranks never run out of data while others wait. The stream is endless (epoch
after epoch); the trainer stops it after `max_steps`. Given the seed, the sequence of batches is fixed,
so resuming skips exactly the batches already consumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from merr_builder.layout import BuildLayout
from merr_builder.shards import read_shard_rows
from merr_builder.speech import subtitle
from merr_builder.tasks import TASKS, instruction, target
from merr_builder.trainer.features import FeatureScaler

TEXT_COLUMNS = ["clip_id", "label", *subtitle.COLUMNS, "coarse_caption", "fine_caption", "split"]


@dataclass
class Sample:
    clip_id: str
    task: str
    instruction: str  # with the <VideoHere>/<FeatureHere> slots, without [INST]
    answer: str | None
    features: dict[str, np.ndarray]
    label: str | None


def shard_files(folders: list[Path]) -> list[Path]:
    layouts = [BuildLayout(folder) for folder in folders]
    files = [f for layout in layouts for f in layout.shard_files()]
    if not files:
        raise FileNotFoundError(f"no shards under {', '.join(str(layout.shards) for layout in layouts)}")
    return files


def read_rows(folders: list[Path], columns: list[str], split: str | None) -> list[dict]:
    """Every row of the split (the text columns and these feature columns: FeatureScaler.columns), in
    clip-id order."""
    columns = list(dict.fromkeys(TEXT_COLUMNS + list(columns)))
    rows = [r for f in shard_files(folders) for r in read_shard_rows(f, columns)]
    return sorted((r for r in rows if split is None or r["split"] == split), key=lambda r: r["clip_id"])


def samples_of(row: dict, tasks: list[str], scaler: FeatureScaler, rng: random.Random) -> list[Sample]:
    features = scaler.features(row)
    out = []
    for task in tasks:
        answer = target(task, row)
        if answer is None:
            continue
        out.append(Sample(row["clip_id"], task, instruction(task, subtitle.spoken_sentence(row), rng), answer, features, row["label"]))
    return out


class SampleStream(torch.utils.data.IterableDataset):
    """Endless batches (lists of Sample) for one rank; `skip` batches already consumed are passed over."""

    def __init__(self, folders: list[Path], split: str | None, tasks: list[str], scaler: FeatureScaler, batch_size: int,
                 seed: int, shuffle_buffer: int = 1024, length_window: int = 8, rank: int = 0, world: int = 1,
                 skip: int = 0) -> None:  # fmt: skip
        self.files = shard_files(folders)
        self.split, self.tasks, self.scaler, self.batch_size = split, tasks, scaler, batch_size
        self.seed, self.shuffle_buffer, self.length_window = seed, shuffle_buffer, length_window
        self.rank, self.world, self.skip = rank, world, skip
        self.columns = list(dict.fromkeys(TEXT_COLUMNS + scaler.columns))
        self.groups = [(f, g) for f in self.files for g in range(pq.ParquetFile(f).num_row_groups)]

    def __iter__(self) -> Iterator[list[Sample]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        part, parts = self.rank * workers + worker, self.world * workers
        to_skip = len(range(worker, self.skip, workers))  # the DataLoader takes batches from workers in turn
        for index, batch in enumerate(self._batches(part, parts)):
            if index >= to_skip:
                yield batch

    def _batches(self, part: int, parts: int) -> Iterator[list[Sample]]:
        epoch = 0
        while True:
            rng = random.Random(f"{self.seed}:{epoch}:{part}")
            order = random.Random(f"{self.seed}:{epoch}").sample(self.groups, len(self.groups))  # the same for every part
            buffer: list[Sample] = []
            window: list[Sample] = []
            produced = False
            for path, group in order:
                rows = [r for r in read_shard_rows(path, self.columns, group) if self.split is None or r["split"] == self.split]
                for row in rows[part::parts]:
                    for sample in samples_of(row, self.tasks, self.scaler, rng):
                        buffer.append(sample)
                        if len(buffer) >= self.shuffle_buffer:
                            window.append(buffer.pop(rng.randrange(len(buffer))))
                        if len(window) >= self.batch_size * self.length_window:
                            yield from self._by_length(window, rng)
                            produced, window = True, []
            rng.shuffle(buffer)
            window += buffer
            if window:
                produced = True
                yield from self._by_length(window, rng)
            if not produced:
                raise RuntimeError(f"no training samples for tasks {self.tasks} in split {self.split!r} of {self.files[0].parent}")
            epoch += 1

    def _by_length(self, window: list[Sample], rng: random.Random) -> Iterator[list[Sample]]:
        window = sorted(window, key=lambda s: len(s.instruction) + len(s.answer or ""))
        batches = [window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        rng.shuffle(batches)
        yield from batches


def valid_tasks(tasks: list[str]) -> list[str]:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    return tasks
