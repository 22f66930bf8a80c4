from pathlib import Path

import pyarrow as pa
import pytest

from merr_builder.schema import SHARD_SCHEMA, TABLES, SchemaError, render_markdown, table_from_rows

REPO = Path(__file__).resolve().parents[1]

# DESIGN.md §3: the columns every shard row has (the data contract).
DESIGN_COLUMNS = """clip_id source_path duration_s fps width height has_audio n_faces peak_frame_index peak_time_s
peak_frame_jpeg peak_face_jpeg frames_jpeg aus_peak au_series transcript transcript_language transcript_source
egemaps visual_expression_description visual_objective_description audio_tone_description pseudo_label
pseudo_label_score label label_source coarse_caption fine_caption fine_status split provenance""".split()


def test_shard_schema_has_every_design_column():
    assert set(DESIGN_COLUMNS) <= set(SHARD_SCHEMA.names)


def test_every_column_is_documented():
    for name, schema in TABLES.items():
        for field in schema:
            assert (field.metadata or {}).get(b"doc"), f"{name}.{field.name} has no doc"


def test_rendered_docs_are_current():
    for name, schema in TABLES.items():
        path = REPO / "schemas" / f"{name}.md"
        assert path.read_text(encoding="utf-8") == render_markdown(name, schema), (
            f"{path} is stale: run `python -m merr_builder.schema schemas/`"
        )


def test_writers_reject_rows_that_break_the_schema():
    with pytest.raises(SchemaError, match="clip_id"):
        table_from_rows([{"clip_id": None, "source_path": "x"}], TABLES["quarantine"])
    with pytest.raises(SchemaError, match="missing columns"):
        from merr_builder.schema import validate_table

        validate_table(pa.table({"clip_id": ["a"]}), SHARD_SCHEMA)
