"""`merr export emotion-llama` on a real build, read back the way the Emotion-LLaMA repository's dataset
class reads these files (first_face.py: `line.strip().split(' ')`, t[0] name, t[2] label looked up in its
nine-label index, JSON dicts keyed by name, the transcript found with `df.loc[df.name == name, 'sentence']`,
the video at `<name>.mp4` or `<name>.avi`, features as `<folder>/<name>.npy`)."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from merr_builder.finished_build import ExportError
from merr_builder.export.emotion_llama import FEATURE_FOLDERS, export_emotion_llama
from merr_builder.shards import shard_name
from merr_builder.speech.subtitle import spoken_sentence

# The original's label index, in its own order (not merr_builder's), to read the files as it does.
ORIGINAL_EMOS = ["neutral", "angry", "happy", "sad", "worried", "surprise", "fear", "contempt", "doubt"]


def read_like_emotion_llama(folder: Path, ann: str, json_name: str, field: str) -> list[dict]:
    lines = [x.strip().split(" ") for x in open(folder / ann)]
    records = json.loads((folder / json_name).read_text())
    sentences = pd.read_csv(folder / "transcription_en_all.csv")
    samples = []
    for t in lines:
        name, label = t[0], t[2]
        video = folder / "video" / f"{name}.mp4"
        video = video if video.exists() else folder / "video" / f"{name}.avi"
        ok, frame = cv2.VideoCapture(str(video)).read()  # the global encoder's frame
        samples.append({
            "name": name, "frames": int(t[1]), "emotion": ORIGINAL_EMOS.index(label), "answer": records[name][field],
            "sentence": sentences.loc[sentences["name"] == name, "sentence"].values[0], "frame_ok": ok and frame is not None,
        })  # fmt: skip
    return samples


def test_the_export_has_every_file_with_one_line_per_kept_clip(sample_build, tmp_path):
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
