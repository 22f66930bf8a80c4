"""Reading a finished build (its manifest, labelled rows) for the exports, and where an export may write.

An export reads the build under the build's lock as a reader (no build, `merr annotate` or `merr encode`
writes it meanwhile), writes only inside its target, and never touches the build or its inputs: a target
that is, holds or lies inside one of them is refused. It replaces only a folder that holds a previous
export (its EXPORT_MARKER file) or nothing, and publishes as a build does: complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from merr_builder.labels import MERR_LABELS
from merr_builder.layout import BuildLayout, NotABuildError
from merr_builder.lock import BuildLockedError, read_lock
from merr_builder.names import id_problem, openable, path_text
from merr_builder.shards import read_build_rows

EXPORT_MARKER = ".merr-export.json"  # in every folder an export wrote: the one kind of folder an export replaces


class ExportError(RuntimeError):
    """The build cannot be exported as asked (nothing was written)."""


def read_manifest(out_dir: Path) -> dict:
    try:
        return BuildLayout(out_dir).read_manifest()
    except NotABuildError as exc:
        raise ExportError(str(exc)) from exc


def labelled_rows(out_dir: Path, columns: list[str]) -> tuple[list[dict], int]:
    """Rows that carry a label, in clip-id order, and how many rows had none.

    A label outside the nine MERR labels refuses the export: the original trainer's label index would
    fail on it (or, worse, train on a label the paper does not have)."""
    read_manifest(out_dir)
    wanted = list(dict.fromkeys(["clip_id", "label", *columns]))
    rows = read_build_rows(out_dir, wanted)
    unknown = [f"{r['clip_id']} ({r['label']!r})" for r in rows if r["label"] is not None and r["label"] not in MERR_LABELS]
    if unknown:
        raise ExportError(
            f"{len(unknown)} rows have a label outside the nine MERR labels ({', '.join(MERR_LABELS)}): "
            f"{clip_list(unknown)}; fix the label file and run merr annotate"
        )
    labelled = [r for r in rows if r["label"] is not None]
    return labelled, len(rows) - len(labelled)


@contextmanager
def reading_build(out_dir: Path, *targets: Path) -> Iterator[dict]:
    """The build's manifest, with the build held as a reader for the block; refused (ExportError) when a
    target is, holds or lies inside the build or one of its inputs (its input folder or manifest, a clip)."""
    manifest = read_manifest(out_dir)
    build = Path(out_dir)
    guarded = {build: "the build", Path(manifest.get("input", {}).get("path") or build): "the build's input"}
    for path, what in guarded.items():
        _refuse_overlap(targets, path, what)
    try:
        with read_lock(out_dir):
            yield manifest
    except BuildLockedError as exc:
        raise ExportError(str(exc)) from None


def check_sources_outside(rows: list[dict], *targets: Path) -> None:
    """Refuse targets that are or hold a source clip (replacing them would delete it)."""
    for row in rows:
        _refuse_overlap(targets, Path(source_file(row)), f"the source clip of {row['clip_id']}")


def _refuse_overlap(targets: tuple[Path, ...], path: Path, what: str) -> None:
    """ExportError when a target is `path`, lies inside it or holds it (links resolved)."""
    path = Path(path).resolve()
    for target in (Path(t).resolve() for t in targets):
        relation = "is" if target == path else "lies inside" if path in target.parents else "holds" if target in path.parents else None
        if relation:
            raise ExportError(f"the export target {path_text(target)} {relation} {what} ({path_text(path)}); write the export somewhere else")


def source_file(row: dict) -> str:
    """A row's source clip, to open (its raw path where the name is not UTF-8)."""
    return openable(row["source_path"], row.get("source_path_bytes"))


def member(folder: Path, name: str) -> Path:
    """`folder/name`, refused unless `name` is one plain file name (an id that got past the grammar could
    otherwise write anywhere: `../..`, `a/b`)."""
    problem = None if name and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name else "is not a file name"
    path = Path(folder) / name
    if problem is None and path.resolve().parent != Path(folder).resolve():
        problem = "leads outside the export folder"
    if problem:
        raise ExportError(f"{path_text(name)!r} {problem}; nothing was exported")
    return path


def check_ids(rows: list[dict]) -> None:
    """Every exported id follows the grammar (names.py): they name files and lines in every format."""
    bad = [f"{path_text(r['clip_id'])!r} {problem}" for r in rows if (problem := id_problem(r["clip_id"]))]
    if bad:
        raise ExportError(f"{len(bad)} clip ids in this build are outside the id grammar: {clip_list(bad)}; build it again "
                          "(ids from file names are made safe at ingest) or fix the manifest")  # fmt: skip


@contextmanager
def fresh_folder(target: Path, what: str = "export") -> Iterator[Path]:
    """A temporary folder beside `target` that replaces it when the block succeeds (and vanishes if not),
    so an export is either complete or absent. Only a folder an export wrote (EXPORT_MARKER), an empty
    folder or nothing is replaced; anything else is refused before any work."""
    target = Path(target).absolute()
    if target.is_symlink() or target.is_file():
        raise ExportError(f"{path_text(target)} exists and is not a folder; choose another target")
    if target.is_dir() and any(target.iterdir()) and not (target / EXPORT_MARKER).is_file():
        raise ExportError(f"{path_text(target)} holds files that no export wrote (no {EXPORT_MARKER}); "
                          "an export replaces only an earlier export: choose an empty or new folder")  # fmt: skip
    temp = target.with_name(f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temp.mkdir(parents=True)
    try:
        yield temp
        (temp / EXPORT_MARKER).write_text(json.dumps({"what": what}) + "\n")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        if target.exists():
            target.rename(old)  # the swap: two renames in one folder, the old export removed after
        temp.rename(target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def clip_list(items: list[str], most: int = 10) -> str:
    """Clips named in an error: the first `most`, and how many more."""
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def link_or_copy(source: Path, path: Path, final_dir: Path, copy: bool) -> None:
    """`path` → `source`: a copy, or a symlink relative to `final_dir` (the folder `path` will finally be
    in), so an export moved together with its sources still resolves."""
    if copy:
        shutil.copyfile(source, path)
    else:
        os.symlink(os.path.relpath(Path(source).absolute(), Path(final_dir).absolute()), path)
