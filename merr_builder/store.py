"""Per-partition stage outputs under OUT/stages/: what resume and regeneration read.

Each (stage, partition) writes two Parquet files atomically: its quarantine rows, then its outputs. The
outputs file is written last, so its presence under the expected fingerprint means the work is done.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from merr_builder.atomic import atomic_path, remove_stale_temps
from merr_builder.layout import STAGES_DIR
from merr_builder.quarantine import QuarantineRecord
from merr_builder.records import BUILD_WIDE
from merr_builder.schema import QUARANTINE_SCHEMA, table_from_rows


class PartitionStore:
    def __init__(self, out_dir: Path) -> None:
        self.root = Path(out_dir) / STAGES_DIR

    @staticmethod
    def _prefix(index: int) -> str:
        return "part-all" if index == BUILD_WIDE else f"part-{index:05d}"

    def _stem(self, stage: str, index: int, fingerprint: str) -> Path:
        return self.root / stage / f"{self._prefix(index)}-{fingerprint[:16]}"

    def outputs_path(self, stage: str, index: int, fingerprint: str) -> Path:
        return self._stem(stage, index, fingerprint).with_suffix(".parquet")

    def quarantine_path(self, stage: str, index: int, fingerprint: str) -> Path:
        return self._stem(stage, index, fingerprint).with_suffix(".quarantine.parquet")

    def has(self, stage: str, index: int, fingerprint: str) -> bool:
        return self.outputs_path(stage, index, fingerprint).is_file()

    def write(
        self, stage: str, index: int, fingerprint: str, outputs: pa.Table, quarantined: list[QuarantineRecord]
    ) -> None:
        stage_dir = self.root / stage
        remove_stale_temps(stage_dir)
        q_table = table_from_rows([vars(q) for q in quarantined], QUARANTINE_SCHEMA)
        for table, final in (
            (q_table, self.quarantine_path(stage, index, fingerprint)),
            (outputs, self.outputs_path(stage, index, fingerprint)),
        ):
            with atomic_path(final) as temp:
                pq.write_table(table, temp, compression="zstd")
        self._drop_superseded(stage, index, fingerprint)

    def _drop_superseded(self, stage: str, index: int, fingerprint: str) -> None:
        """Older results of the same partition (other config or inputs) are no longer reachable."""
        keep = {self.outputs_path(stage, index, fingerprint).name, self.quarantine_path(stage, index, fingerprint).name}
        for path in (self.root / stage).glob(f"{self._prefix(index)}-*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def read_outputs(
        self, stage: str, index: int, fingerprint: str, columns: set[str] | None = None, clip_ids: list[str] | None = None
    ) -> pa.Table:
        """A stage's stored outputs, or only those of `columns` it has (clip_id always), or only the rows of
        `clip_ids` (a partition's rows from a build-wide step's output)."""
        path = self.outputs_path(stage, index, fingerprint)
        filters = pc.field("clip_id").isin(pa.array(clip_ids, pa.string())) if clip_ids is not None else None
        if columns is None:
            return pq.read_table(path, filters=filters)
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[n for n in names if n in columns or n == "clip_id"], filters=filters)

    def read_quarantine(self, stage: str, index: int, fingerprint: str) -> pa.Table:
        return pq.read_table(self.quarantine_path(stage, index, fingerprint))
