"""`merr export emotion-llama` on a real build, read back the way the Emotion-LLaMA repository's dataset
class reads these files (first_face.py: `line.strip().split(' ')`, t[0] name, t[2] label looked up in its
nine-label index, JSON dicts keyed by name, the transcript found with `df.loc[df.name == name, 'sentence']`,
the video at `<name>.mp4` or `<name>.avi`, features as `<folder>/<name>.npy`)."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from original_loader import ORIGINAL_EMOS, read_like_emotion_llama  # (tests/fixtures)

from merr_builder.finished_build import ExportError
from merr_builder.export.emotion_llama import FEATURE_FOLDERS, export_emotion_llama
from merr_builder.shards import shard_name
from merr_builder.speech.subtitle import spoken_sentence


def test_the_export_has_every_file_with_one_line_per_kept_clip(sample_build_with_fine, tmp_path):
    sample_build = sample_build_with_fine
    result = export_emotion_llama(sample_build, tmp_path / "MER2023")
    folder = result.folder
    shards = pd.read_parquet(sample_build / "shards").set_index("clip_id")
    coarse_ids = sorted(shards.index[shards.label.notna() & shards.coarse_caption.notna()])
    fine_ids = sorted(shards.index[shards.fine_status == "kept"])
    assert result.coarse == len(coarse_ids) >= 2 and result.fine == len(fine_ids) >= 1  # (the AU filter left the others out)

    coarse = read_like_emotion_llama(folder, "MERR_coarse_grained.txt", "MERR_coarse_grained.json", "caption")
    fine = read_like_emotion_llama(folder, "MERR_fine_grained.txt", "MERR_fine_grained.json", "smp_reason_caption")
    assert [s["name"] for s in coarse] == coarse_ids and [s["name"] for s in fine] == fine_ids
    assert sorted(json.loads((folder / "MERR_coarse_grained.json").read_text())) == coarse_ids
    assert sorted(json.loads((folder / "MERR_fine_grained.json").read_text())) == fine_ids
    assert sorted(pd.read_csv(folder / "transcription_en_all.csv")["name"]) == coarse_ids
    for sample in coarse + fine:
        row = shards.loc[sample["name"]]
        assert ORIGINAL_EMOS[sample["emotion"]] == row.label
        assert sample["frames"] == round(row.duration_s * row.fps) and sample["frame_ok"]
        assert sample["sentence"] == spoken_sentence(row.to_dict())  # English, or the plain words for no speech
    for sample in coarse:
        assert sample["answer"] == shards.loc[sample["name"]].coarse_caption
        assert (folder / "peak_frames" / f"{sample['name']}.jpg").read_bytes() == shards.loc[sample["name"]].peak_frame_jpeg
    for sample in fine:
        assert sample["answer"] == shards.loc[sample["name"]].fine_caption
    mer = pd.read_csv(sample_build.parent / "input" / "transcription_en_all.csv").set_index("name")["sentence"]
    assert all(s["sentence"] == mer[s["name"]] for s in coarse if s["name"] in mer.index)  # MER2023's own subtitles
    # No encoder features in this build: the folders are left out, and the export says so.
    assert not any((folder / f).exists() for f in FEATURE_FOLDERS) and "merr encode" in " ".join(result.notes)


def test_1024_d_features_are_written_as_the_trainer_loads_them(sample_build, tmp_path):
    import pyarrow as pa

    build = tmp_path / "build"
    build.mkdir()
    for item in ("manifest.json", "quarantine.parquet"):
        (build / item).write_bytes((sample_build / item).read_bytes())
    table = pq.read_table(sample_build / "shards")
    rng = np.random.default_rng(0)
    for column in FEATURE_FOLDERS.values():  # as `merr encode` will store them: one 1024-d vector per clip
        values = pa.array([rng.standard_normal(1024).astype(np.float32).tolist() for _ in range(len(table))], pa.list_(pa.float32()))
        table = table.set_column(table.schema.get_field_index(column), column, values)
    (build / "shards").mkdir()
    pq.write_table(table, build / "shards" / shard_name(0, 1))
    result = export_emotion_llama(build, tmp_path / "out")
    rows = table.to_pandas().set_index("clip_id")
    names = [line.split(" ")[0] for line in (result.folder / "MERR_coarse_grained.txt").read_text().splitlines()]
    for folder, column in FEATURE_FOLDERS.items():
        assert result.features[folder] == len(names)
        for name in names:
            feature = np.load(result.folder / folder / f"{name}.npy")
            assert feature.shape == (1024,) and feature.dtype == np.float32
            np.testing.assert_array_equal(feature, np.asarray(rows.loc[name, column], dtype=np.float32))


def test_a_label_outside_the_nine_is_refused_and_nothing_is_written(sample_build, tmp_path):
    import pyarrow as pa

    build = tmp_path / "build"
    (build / "shards").mkdir(parents=True)
    (build / "manifest.json").write_bytes((sample_build / "manifest.json").read_bytes())
    table = pq.read_table(sample_build / "shards")
    labels = table.column("label").to_pylist()
    labels[0] = "disgust"
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.string()))
    pq.write_table(table, build / "shards" / shard_name(0, 1))
    with pytest.raises(ExportError, match=rf"outside the nine MERR labels.*{table.column('clip_id')[0]} \('disgust'\)"):
        export_emotion_llama(build, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_a_folder_that_is_no_build_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="not a finished build"):
        export_emotion_llama(tmp_path, tmp_path / "out")
    assert os.listdir(tmp_path) == []


def _build_with(sample_build, folder: Path, renames: dict[int, str], null_audio: int | None) -> list[str]:
    """A copy of the sample build whose rows 0, 1, 2 … (in clip-id order, each given a label and a coarse
    caption where the build left them out) are renamed as asked, with 1024-d features as `merr encode`
    stores them and no audio feature for one row (a clip without audio). Returns the ids in order."""
    import pyarrow as pa

    (folder / "shards").mkdir(parents=True)
    for item in ("manifest.json", "quarantine.parquet"):
        (folder / item).write_bytes((sample_build / item).read_bytes())
    table = pq.read_table(sample_build / "shards").sort_by("clip_id")
    data = table.to_pylist()
    while len(data) < 3:  # (the AU filter leaves few rows in the sample build: a copy stands for another clip)
        data.append({**data[0], "clip_id": f"{data[0]['clip_id']}_copy{len(data)}"})
    captioned = list(range(len(data)))
    rng = np.random.default_rng(0)
    for position, i in enumerate(captioned):
        row = data[i]
        row["label"] = row["label"] or "neutral"
        row["coarse_caption"] = row["coarse_caption"] or f"A fixture caption for {row['clip_id']}."
        row["clip_id"] = renames.get(position, row["clip_id"])
        for column in FEATURE_FOLDERS.values():
            row[column] = rng.standard_normal(1024).astype(np.float32).tolist()
        if position == null_audio:
            row["feat_audio"] = None
    pq.write_table(pa.Table.from_pylist(data, schema=table.schema), folder / "shards" / shard_name(0, 1))
    return [data[i]["clip_id"] for i in captioned]


def test_names_with_spaces_missing_features_and_unicode_names_are_refused_or_read_as_the_original_reads_them(sample_build, tmp_path):
    spaced, unicode_name = "Wolfgang Langer Pexels", "微笑的人_01"
    build = tmp_path / "build"
    ids = _build_with(sample_build, build, {0: spaced, 1: unicode_name}, null_audio=2)
    # A clip without its audio feature: the original would die on HL-UTT/<name>.npy, so the export refuses.
    with pytest.raises(ExportError, match=rf"1 clips lack a feature.*{ids[2]} \(HL-UTT\).*--drop-missing"):
        export_emotion_llama(build, tmp_path / "out")
    # Dropping it, the spaced name is next: the .txt line would split into four fields.
    with pytest.raises(ExportError, match=rf"'{spaced}' has white space"):
        export_emotion_llama(build, tmp_path / "out", drop_missing=True)
    assert not (tmp_path / "out").exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())

    # A name pandas reads back as something else (NaN here) is refused too: the transcript lookup finds nothing.
    other = tmp_path / "na-build"
    _build_with(sample_build, other, {0: "NA"}, null_audio=None)
    with pytest.raises(ExportError, match=r"'NA' is read back by pandas as nan"):
        export_emotion_llama(other, tmp_path / "out")

    # Renamed at the source, the build exports; copied videos let the folder move anywhere and still read.
    renamed = tmp_path / "renamed"
    ids = _build_with(sample_build, renamed, {0: spaced.replace(" ", "_"), 1: unicode_name}, null_audio=2)
    result = export_emotion_llama(renamed, tmp_path / "data" / "MER2023", drop_missing=True, copy_videos=True)
    assert result.dropped == [ids[2]] and ids[2] in " ".join(result.notes)
    moved = tmp_path / "elsewhere" / "MER2023"
    moved.parent.mkdir()
    result.folder.rename(moved)
    samples = read_like_emotion_llama(moved, "MERR_coarse_grained.txt", "MERR_coarse_grained.json", "caption")
    names = [s["name"] for s in samples]
    assert unicode_name in names and spaced.replace(" ", "_") in names and ids[2] not in names
    assert all(s["frame_ok"] for s in samples) and not any(p.is_symlink() for p in (moved / "video").iterdir())
    for name in names:  # FeatureFaceDataset.get(): the three features of every listed clip
        for folder in FEATURE_FOLDERS:
            assert np.load(moved / folder / f"{name}.npy").shape == (1024,)

    # By default the videos are relative links: the export moves together with the clips it points to.
    linked = export_emotion_llama(renamed, tmp_path / "linked", drop_missing=True)
    links = sorted((linked.folder / "video").iterdir())
    assert links and all(link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.exists() for link in links)
