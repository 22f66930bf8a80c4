"""Sharded Parquet output: zstd, byte-sized row groups for streaming, size-based rotation, atomic names.

Shards are written under hidden temporary names and renamed to `merr-<index>-of-<total>.parquet` only once
every shard is complete (the total is known only then), so no final name ever holds a partial file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from merr_builder.assets import sha256_file
from merr_builder.atomic import publish, remove_stale_temps, temp_path_for
from merr_builder.config import ShardConfig
from merr_builder.layout import SHARD_NAME, SHARDS_DIR, BuildLayout
from merr_builder.schema import validate_table

_MB = 1024 * 1024


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the build folder
    rows: int
    bytes: int
    sha256: str


def shard_name(index: int, total: int) -> str:
    return f"merr-{index:05d}-of-{total:05d}.parquet"


class ShardWriter:
    """Append tables; get finished, renamed shards from `close()`.

    Memory holds at most one row group's worth of rows (about `row_group_mb`), whatever the dataset size.
    """

    def __init__(self, out_dir: Path, schema: pa.Schema, config: ShardConfig) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / SHARDS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.dir)
        self.schema = schema
        self.config = config
        self._buffer: list[pa.Table] = []
        self._buffered_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._current: Path | None = None
        self._current_rows = 0
        self._done: list[tuple[Path, int]] = []  # (temp path, rows)

    def write(self, table: pa.Table) -> None:
        table = validate_table(table, self.schema)
        if table.num_rows == 0:
            return
        # Slice big tables so each row group holds about row_group_mb, whatever the caller's batch size.
        target = self.config.row_group_mb * _MB
        rows_per_group = max(1, int(target * table.num_rows / max(table.nbytes, 1)))
        for start in range(0, table.num_rows, rows_per_group):
            piece = table.slice(start, rows_per_group)
            if self._buffer and self._buffered_bytes + piece.nbytes > target:
                self._flush_row_group()
            self._buffer.append(piece)
            self._buffered_bytes += piece.nbytes

    def _flush_row_group(self) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer).combine_chunks()
        self._buffer, self._buffered_bytes = [], 0
        if self._writer is None:
            self._current = temp_path_for(self.dir / f"shard-{len(self._done):05d}.parquet")
            self._writer = pq.ParquetWriter(
                self._current,
                self.schema,
                compression="zstd",
                compression_level=self.config.zstd_level,
                write_page_index=True,
            )
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._current_rows += table.num_rows
        if os.path.getsize(self._current) >= self.config.max_shard_mb * _MB:  # type: ignore[arg-type]
            self._close_current()

    def _close_current(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._done.append((self._current, self._current_rows))  # type: ignore[arg-type]
        self._writer, self._current, self._current_rows = None, None, 0

    def close(self) -> list[ShardInfo]:
        """Finish the last shard, rename all to their final names, and drop shards of earlier builds."""
        self._flush_row_group()
        self._close_current()
        total = len(self._done)
        infos = []
        for index, (temp, rows) in enumerate(self._done):
            final = self.dir / shard_name(index, total)
            publish(temp, final)
            infos.append(ShardInfo(str(final.relative_to(self.out_dir)), rows, final.stat().st_size, sha256_file(final)))
        keep = {Path(info.path).name for info in infos}
        for old in self.dir.iterdir():
            if SHARD_NAME.match(old.name) and old.name not in keep:
                old.unlink()
        return infos

    def abort(self) -> None:
        """Drop everything written so far (no final name was ever used)."""
        if self._writer is not None:
            self._writer.close()
        for path in [p for p, _ in self._done] + ([self._current] if self._current else []):
            path.unlink(missing_ok=True)
        self._done, self._writer, self._current = [], None, None


def read_shard_rows(path: Path, columns: list[str], row_group: int | None = None) -> list[dict]:
    """Rows of one shard (or one of its row groups) with the columns asked for; a column the shard lacks
    (an older build's: feat_* before `merr encode` existed) reads as null."""
    file = pq.ParquetFile(path)
    present = [c for c in columns if c in file.schema_arrow.names]
    table = file.read(columns=present) if row_group is None else file.read_row_group(row_group, columns=present)
    missing = [c for c in columns if c not in present]
    rows = table.to_pylist()
    for row in rows:
        row.update(dict.fromkeys(missing))
    return rows


def read_build_rows(out_dir: Path, columns: list[str]) -> list[dict]:
    """Every row of a finished build's shards with the columns asked for, in clip_id order."""
    files = BuildLayout(out_dir).shard_files()
    return sorted((row for f in files for row in read_shard_rows(f, columns)), key=lambda r: r["clip_id"])
