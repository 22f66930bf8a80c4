"""`merr export sharegpt` on a real build, validated against LLaMA-Factory's documented dataset format
(data/README: sharegpt formatting; default tags from/value/human/gpt; human and gpt turns alternate,
human first; as many <image>/<video>/<audio> tokens as paths in images/videos/audios; media paths
relative to dataset_dir; the dataset registered in dataset_info.json with its columns)."""

import json
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from merr_builder.finished_build import ExportError
from merr_builder.media import decode_audio
from merr_builder.export.sharegpt import export_sharegpt
from merr_builder.speech.subtitle import spoken_sentence
from merr_builder.tasks import EMOTION_INSTRUCTIONS, REASON_INSTRUCTIONS, normalise_target


def validate_llamafactory_sharegpt(dataset_dir: Path, name: str) -> list[dict]:
    info = json.loads((dataset_dir / "dataset_info.json").read_text())[name]
    assert info["formatting"] == "sharegpt"
    columns = info["columns"]
    samples = json.loads((dataset_dir / info["file_name"]).read_text())
    assert isinstance(samples, list) and samples
    for sample in samples:
        turns = sample[columns["messages"]]
        assert len(turns) >= 2 and len(turns) % 2 == 0
        for i, turn in enumerate(turns):
            assert set(turn) == {"from", "value"} and isinstance(turn["value"], str) and turn["value"]
            assert turn["from"] == ("human" if i % 2 == 0 else "gpt")
        text = "".join(t["value"] for t in turns if t["from"] == "human")
        for token, column in (("<image>", "images"), ("<video>", "videos"), ("<audio>", "audios")):
            paths = sample.get(columns[column], []) if column in columns else []  # a column not registered: no media of its kind
            assert text.count(token) == len(paths), (token, sample)
            for path in paths:
                assert (dataset_dir / path).is_file()  # relative to dataset_dir, or absolute
    return samples


def test_the_export_validates_as_llamafactory_sharegpt(sample_build_with_fine, tmp_path):
    sample_build = sample_build_with_fine
    (tmp_path / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))
    result = export_sharegpt(sample_build, tmp_path / "merr.json")
    samples = validate_llamafactory_sharegpt(tmp_path, "merr")
    assert "other" in json.loads((tmp_path / "dataset_info.json").read_text())  # a registry already there is kept
    shards = pd.read_parquet(sample_build / "shards").set_index("clip_id")
    by_task = {task: {s["clip_id"]: s for s in samples if s["task"] == task} for task in ("emotion", "reason", "reason_v2")}
    assert set(by_task["emotion"]) == set(shards.index[shards.label.notna()])
    assert set(by_task["reason"]) == set(shards.index[shards.coarse_caption.notna()])
    assert set(by_task["reason_v2"]) == set(shards.index[shards.fine_status == "kept"]) and by_task["reason_v2"]
    assert result.samples == len(samples) == sum(map(len, by_task.values()))
    for task, pool, column in (("emotion", EMOTION_INSTRUCTIONS, "label"), ("reason", REASON_INSTRUCTIONS, "coarse_caption"),
                               ("reason_v2", REASON_INSTRUCTIONS, "fine_caption")):  # fmt: skip
        for clip_id, sample in by_task[task].items():
            row = shards.loc[clip_id]
            human, answer = sample["conversations"][0]["value"], sample["conversations"][1]["value"]
            assert answer == normalise_target(row[column])
            assert f"The person in video says: {spoken_sentence(row.to_dict())}. [{task}] " in human
            assert any(human.endswith(instruction) for instruction in pool)
            video = tmp_path / sample["videos"][0]  # a relative link beside the file, resolving to the clip
            assert video.is_symlink() and not Path(sample["videos"][0]).is_absolute() and video.resolve() == Path(row.source_path).resolve()
            assert (tmp_path / sample["images"][0]).read_bytes() == row.peak_frame_jpeg
            with wave.open(str(tmp_path / sample["audios"][0])) as audio:
                assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (16_000, 1, 2)
                pcm = np.frombuffer(audio.readframes(audio.getnframes()), "<i2") / 32767
            np.testing.assert_allclose(pcm, np.clip(decode_audio(row.source_path, until_s=row.duration_s), -1, 1), atol=1 / 32767)  # as the build hears it
            assert 0.5 * row.duration_s < len(pcm) / 16_000 <= row.duration_s + 0.05


def test_only_asked_tasks_are_written_and_an_unknown_task_is_refused(sample_build, tmp_path):
    result = export_sharegpt(sample_build, tmp_path / "emotion.json", tasks=("emotion",))
    assert result.by_task == {"emotion": result.samples}
    with pytest.raises(ExportError, match="unknown task.*caption"):
        export_sharegpt(sample_build, tmp_path / "x.json", tasks=("caption",))


def test_modalities_choose_what_is_attached_for_templates_without_an_audio_tower(sample_build, tmp_path):
    """LLaMA-Factory's mm_plugin refuses audio inputs for templates without an audio tower (qwen2_vl,
    llava_next_video, …): `--modalities image,video` writes no <audio> token, no audios list, no WAVs and
    does not register an audios column."""
    result = export_sharegpt(sample_build, tmp_path / "merr.json", modalities=("image", "video"), copy_videos=True)
    samples = validate_llamafactory_sharegpt(tmp_path, "merr")
    assert result.samples == len(samples) > 0
    assert all("audios" not in s and "<audio>" not in s["conversations"][0]["value"] for s in samples)
    assert all(s["conversations"][0]["value"].startswith("<image><video>") for s in samples if "images" in s)
    assert all(not (tmp_path / s["videos"][0]).is_symlink() for s in samples)  # copies, as asked
    assert "audios" not in json.loads((tmp_path / "dataset_info.json").read_text())["merr"]["columns"]
    assert not (tmp_path / "merr_media" / "audios").exists()
    with pytest.raises(ExportError, match="unknown modality text"):
        export_sharegpt(sample_build, tmp_path / "again.json", modalities=("image", "text"))
