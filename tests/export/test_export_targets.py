"""Exports write only inside their target: never into, around or over the build or its inputs, never
through an id that names another folder, never over a folder no export wrote, never while a build
writes the folder they read."""

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from merr_builder.export.emotion_llama import export_emotion_llama
from merr_builder.export.sharegpt import export_sharegpt
from merr_builder.finished_build import EXPORT_MARKER, ExportError
from merr_builder.lock import build_lock


@pytest.fixture()
def build(sample_build, tmp_path) -> Path:
    """A copy of the sample build (its manifest names the sample build's input): these tests aim at it."""
    shutil.copytree(sample_build, tmp_path / "out", symlinks=True)
    return tmp_path / "out"


def _input(build: Path) -> Path:
    return Path(json.loads((build / "manifest.json").read_text())["input"]["path"])


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_size for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("where", ["the build", "inside the build", "above the build", "the input", "inside the input"])
def test_a_target_that_is_holds_or_lies_in_the_build_or_its_input_is_refused(build, where):
    to = {"the build": build, "inside the build": build / "shards" / "x", "above the build": build.parent,
          "the input": _input(build), "inside the input": _input(build) / "video" / "x"}[where]  # fmt: skip
    before = {folder: _files(folder) for folder in (build, _input(build))}
    exports = [lambda: export_emotion_llama(build, to)]
    if where != "above the build":  # (sharegpt's file and media folder there are the build's siblings: allowed)
        exports.append(lambda: export_sharegpt(build, to / "merr.json"))
    for export in exports:
        with pytest.raises(ExportError, match="write the export somewhere else"):
            export()
    assert {folder: _files(folder) for folder in before} == before  # the build and its input intact


def test_a_folder_no_export_wrote_is_never_replaced_and_an_earlier_export_is(build, tmp_path):
    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="holds files that no export wrote"):
        export_emotion_llama(build, mine)
    assert (mine / "notes.txt").read_text() == "keep me" and os.listdir(mine) == ["notes.txt"]
    first = export_emotion_llama(build, tmp_path / "export").folder
    assert (first / EXPORT_MARKER).is_file()
    (first / "stale.txt").write_text("from an older export")
    export_emotion_llama(build, tmp_path / "export")  # an earlier export is replaced, whole
    assert not (tmp_path / "export" / "stale.txt").exists() and (tmp_path / "export" / "MERR_coarse_grained.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial or old folder left


def test_an_id_that_names_another_folder_never_writes_outside_the_target(build, tmp_path):
    shard = sorted((build / "shards").glob("*.parquet"))[0]
    rows = pq.read_table(shard).to_pylist()
    labelled = next(r for r in rows if r["label"] and r["coarse_caption"])
    labelled["clip_id"] = "../../../../escape_me"  # a build whose shards were edited by hand
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    to = tmp_path / "a" / "b" / "c" / "export"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(ExportError, match="escape_me"):
        export_emotion_llama(build, to, drop_missing=True)
    with pytest.raises(ExportError, match="outside the id grammar.*escape_me"):
        export_sharegpt(build, to / "merr.json")
    assert not list(Path("/").glob("escape_me*")) and not list(tmp_path.rglob("escape_me*"))
    assert {p for p in set(tmp_path.rglob("*")) - before if not str(p).startswith(str(tmp_path / "a"))} == set()


def test_an_export_waits_for_no_writer_it_is_refused_while_one_writes(build, tmp_path):
    with build_lock(build, "merr annotate"):
        with pytest.raises(ExportError, match="is being written by merr annotate"):
            export_emotion_llama(build, tmp_path / "export")
    assert not (tmp_path / "export").exists()
    assert export_emotion_llama(build, tmp_path / "export").coarse > 0  # once the writer is done
