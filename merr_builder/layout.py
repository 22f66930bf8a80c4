"""The build folder's layout: every path a build writes, and the manifest's reading and writing.

Every reader and writer of a build folder (the pipeline, `merr annotate`, `merr encode`, the exports, the
card, the trainer) goes through `BuildLayout`, so the folder's shape is defined once.

```
OUT/
  manifest.json                     what the build is (BuildLayout.manifest)
  shards/merr-00000-of-000NN.parquet the dataset (BuildLayout.shard_files())
  quarantine.parquet                every clip that did not make it, with the reason
  stages/<unit>/part-*.parquet      each stage's and corpus step's stored output (merr_builder.store)
  stages/rejected.parquet           quarantine rows made outside the stages (discovery, failed partitions)
  cache/llm.sqlite                  LLM and VLM answers already asked
  DATA_CARD.md, card/, gallery.html the data card and the gallery
```
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from merr_builder.atomic import write_bytes_atomic

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.parquet"
STAGES_DIR = "stages"
REJECTED = f"{STAGES_DIR}/rejected.parquet"
SHARDS_DIR = "shards"
SHARD_NAME = re.compile(r"^merr-(\d{5})-of-(\d{5})\.parquet$")
LLM_CACHE = "cache/llm.sqlite"
CARD, GALLERY, PLOTS = "DATA_CARD.md", "gallery.html", "card"


class NotABuildError(ValueError):
    """The folder holds no finished build (no readable manifest)."""


@dataclass(frozen=True)
class BuildLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def quarantine(self) -> Path:
        return self.root / QUARANTINE

    @property
    def rejected(self) -> Path:
        return self.root / REJECTED

    @property
    def stages(self) -> Path:
        return self.root / STAGES_DIR

    @property
    def shards(self) -> Path:
        return self.root / SHARDS_DIR

    @property
    def llm_cache(self) -> Path:
        return self.root / LLM_CACHE

    @property
    def card(self) -> Path:
        return self.root / CARD

    @property
    def gallery(self) -> Path:
        return self.root / GALLERY

    @property
    def plots(self) -> Path:
        return self.root / PLOTS

    def shard_files(self) -> list[Path]:
        """The published shards, in order (never a temporary file)."""
        if not self.shards.is_dir():
            return []
        return sorted(p for p in self.shards.iterdir() if SHARD_NAME.match(p.name))

    def is_build(self) -> bool:
        return self.manifest.is_file()

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise NotABuildError(f"{self.root} is not a finished build ({MANIFEST}: {exc})") from exc

    def write_manifest(self, manifest: dict) -> None:
        write_bytes_atomic(self.manifest, (json.dumps(manifest, indent=2, default=str) + "\n").encode())
