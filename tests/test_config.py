from pathlib import Path

import pytest

from merr_builder.config import BuildConfig, ConfigError, load_config


def test_defaults_match_the_design():
    config = load_config()
    assert config.faces.sample_fps == 5.0
    assert config.media.k_frames == 16
    assert config.run.partition_size == 256
    assert config.run.task_runner == "threads"


def test_yaml_file_then_overrides(tmp_path: Path):
    path = tmp_path / "build.yaml"
    path.write_text("faces:\n  sample_fps: 10\nmedia:\n  k_frames: 8\nrun:\n  partition_size: 4\n")
    config = load_config(path, ["media.k_frames=4", "ingest.require_audio=false"])
    assert config.faces.sample_fps == 10
    assert config.media.k_frames == 4  # the flag wins over the file
    assert config.run.partition_size == 4
    assert config.ingest.require_audio is False


def test_settings_moved_to_the_faces_stage_are_still_read_where_they_were(tmp_path: Path):
    path = tmp_path / "old.yaml"
    path.write_text("media:\n  sample_fps: 2\n  every_frame: true\n  k_frames: 8\n")
    with pytest.warns(FutureWarning, match="'media.sample_fps' is now 'faces.sample_fps'"):
        config = load_config(path)
    assert (config.faces.sample_fps, config.faces.every_frame, config.media.k_frames) == (2, True, 8)
    with pytest.warns(FutureWarning):  # an override with the old name still wins over the file
        assert load_config(path, ["media.sample_fps=3"]).faces.sample_fps == 3
    # A media setting's change no longer touches the faces stage's key, and the other way round.
    assert load_config(None, ["faces.sample_fps=3"]).media.fingerprint() == load_config().media.fingerprint()


def test_toml_file(tmp_path: Path):
    path = tmp_path / "build.toml"
    path.write_text("[shards]\nmax_shard_mb = 64\n")
    assert load_config(path).shards.max_shard_mb == 64


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["media.k_frames=0"], "media.k_frames"),
        (["faces.sample_fps=-1"], "faces.sample_fps"),
        (["media.no_such_field=1"], "media.no_such_field"),
        (["run.task_runner=slurm"], "run.task_runner"),
        (["split.val_fraction=0.7", "split.test_fraction=0.6"], "split"),
    ],
)
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert f"'{field}" in str(err.value)


def test_unparseable_file_is_a_config_error(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("media: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)


def test_section_fingerprints_change_with_values():
    a, b = BuildConfig(), load_config(None, ["media.k_frames=8"])
    assert a.media.fingerprint() != b.media.fingerprint()
    assert a.ingest.fingerprint() == b.ingest.fingerprint()


def test_the_example_config_spells_out_every_default():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "build.example.yaml"
    written = yaml.safe_load(path.read_text())
    defaults = BuildConfig().model_dump(mode="json")
    assert {s: set(f) for s, f in written.items()} == {s: set(f) for s, f in defaults.items()}
    assert load_config(path) == BuildConfig()
