"""Reading a finished build (its manifest, labelled rows) for the exports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from merr_builder.labels import MERR_LABELS
from merr_builder.layout import BuildLayout, NotABuildError
from merr_builder.shards import read_build_rows


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
def fresh_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target` that replaces it when the block succeeds (and vanishes if not),
    so an export is either complete or absent."""
    target = Path(target)
    temp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    temp.rename(target)


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
