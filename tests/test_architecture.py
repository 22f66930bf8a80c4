"""The architecture as import contracts (`[tool.importlinter]` in pyproject.toml), checked by import-linter
over the real import graph: layers from the CLI and flows down to the records, no cycles between sibling
modules, Prefect only under flows/. And the pipeline's one ordered list is what the engine runs."""

import subprocess
import sys
from pathlib import Path

from merr_builder.pipeline import CORPUS_STEPS, STAGES, UNITS

REPO = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_every_step_declares_what_it_reads_from_units_before_it_and_writes_shard_columns_or_drops_rows():
    from merr_builder.schema import SHARD_SCHEMA

    for position, step in enumerate(CORPUS_STEPS):
        earlier = {unit.name for unit in (*STAGES, *CORPUS_STEPS[:position])}
        assert set(step.reads) <= earlier, step.name
        assert set(step.writes) <= set(SHARD_SCHEMA.names) and (step.writes or step.drops), step.name
        assert step.scope in ("partition", "build") and step.version
        assert [f.name for f in step.output_schema][: len(step.writes) + 1] == ["clip_id", *step.writes]
    assert len(set(UNITS)) == len(UNITS)
    assert "merr_builder/pipeline.py" in (REPO / "README.md").read_text()
