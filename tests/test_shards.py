import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from merr_builder.config import ShardConfig
from merr_builder.schema import SHARD_SCHEMA, table_from_rows
from merr_builder.shards import SHARD_NAME, ShardWriter

ROW_HELPER = textwrap.dedent(
    """
    import os
    def shard_rows(start, n, payload=20_000):
        return [
            {"clip_id": f"clip{i:05d}", "source_path": f"/data/clip{i:05d}.mp4", "fingerprint": "0" * 64,
             "duration_s": 3.0, "fps": 25.0, "width": 640, "height": 360, "has_audio": True,
             "frames_jpeg": [os.urandom(payload)], "split": "train", "provenance": "{}"}
            for i in range(start, start + n)
        ]
    """
)
namespace: dict = {}
exec(ROW_HELPER, namespace)
shard_rows = namespace["shard_rows"]


def test_shards_rotate_by_size_with_hashes_and_final_names(tmp_path: Path):
    writer = ShardWriter(tmp_path, SHARD_SCHEMA, ShardConfig(max_shard_mb=0.1, row_group_mb=0.03))
    for start in range(0, 40, 4):
        writer.write(table_from_rows(shard_rows(start, 4), SHARD_SCHEMA))
    shards = writer.close()
    assert len(shards) > 3
    names = sorted(os.listdir(tmp_path / "shards"))
    assert names == [f"merr-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    assert sum(s.rows for s in shards) == 40
    clip_ids = []
    for info in shards:
        path = tmp_path / info.path
        assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert info.bytes == path.stat().st_size
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows == info.rows and meta.row_group(0).column(0).compression == "ZSTD"
        clip_ids += pq.read_table(path).column("clip_id").to_pylist()
    assert clip_ids == [f"clip{i:05d}" for i in range(40)]
    assert max(pq.ParquetFile(tmp_path / s.path).metadata.num_row_groups for s in shards) > 1


def test_a_rebuild_replaces_shards_of_the_previous_build(tmp_path: Path):
    for n_rows, max_mb in ((40, 0.1), (4, 100.0)):
        writer = ShardWriter(tmp_path, SHARD_SCHEMA, ShardConfig(max_shard_mb=max_mb, row_group_mb=0.03))
        writer.write(table_from_rows(shard_rows(0, n_rows), SHARD_SCHEMA))
        shards = writer.close()
    assert sorted(os.listdir(tmp_path / "shards")) == ["merr-00000-of-00001.parquet"]
    assert shards[0].rows == 4


def test_a_killed_writer_leaves_nothing_under_a_final_name(tmp_path: Path):
    child = ROW_HELPER + textwrap.dedent(
        f"""
        from pathlib import Path
        from merr_builder.config import ShardConfig
        from merr_builder.schema import SHARD_SCHEMA, table_from_rows
        from merr_builder.shards import ShardWriter
        writer = ShardWriter(Path({str(tmp_path)!r}), SHARD_SCHEMA, ShardConfig(max_shard_mb=0.1, row_group_mb=0.03))
        start = 0
        while True:
            writer.write(table_from_rows(shard_rows(start, 2), SHARD_SCHEMA))
            start += 2
            print(start, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        if int(line) >= 60:  # several shards rotated, one in the middle of being written
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = os.listdir(tmp_path / "shards")
    assert len(leftovers) > 2
    assert not [name for name in leftovers if SHARD_NAME.match(name)]
    ShardWriter(tmp_path, SHARD_SCHEMA, ShardConfig())  # the next writer clears what the dead one left
    assert os.listdir(tmp_path / "shards") == []


def test_row_groups_are_sized_for_streaming(tmp_path: Path):
    writer = ShardWriter(tmp_path, SHARD_SCHEMA, ShardConfig(row_group_mb=0.1))
    for start in range(0, 60, 3):
        writer.write(table_from_rows(shard_rows(start, 3), SHARD_SCHEMA))
    [info] = writer.close()
    meta = pq.ParquetFile(tmp_path / info.path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert meta.num_row_groups >= 8 and max(sizes) <= 9  # about 0.1 MB of 20 kB rows each


def test_one_big_batch_is_split_into_row_groups(tmp_path: Path):
    writer = ShardWriter(tmp_path, SHARD_SCHEMA, ShardConfig(row_group_mb=0.1))
    writer.write(table_from_rows(shard_rows(0, 50), SHARD_SCHEMA))  # about 1 MB in one call
    [info] = writer.close()
    meta = pq.ParquetFile(tmp_path / info.path).metadata
    assert meta.num_row_groups >= 8 and meta.num_rows == 50


def test_shard_rows_read_back_with_a_missing_column_as_null(tmp_path):
    import pyarrow as pa

    from merr_builder.shards import read_build_rows, read_shard_rows

    (tmp_path / "shards").mkdir()
    for name, ids in (("merr-00001-of-00002.parquet", ["c", "a"]), ("merr-00000-of-00002.parquet", ["b"])):
        pq.write_table(pa.table({"clip_id": ids, "label": ["happy"] * len(ids)}), tmp_path / "shards" / name, row_group_size=1)
    rows = read_build_rows(tmp_path, ["clip_id", "label", "feat_audio"])  # feat_audio: a column this build lacks
    assert [r["clip_id"] for r in rows] == ["a", "b", "c"]
    assert all(r["label"] == "happy" and r["feat_audio"] is None for r in rows)
    second_group = read_shard_rows(tmp_path / "shards" / "merr-00001-of-00002.parquet", ["clip_id", "feat_audio"], 1)
    assert second_group == [{"clip_id": "a", "feat_audio": None}]
