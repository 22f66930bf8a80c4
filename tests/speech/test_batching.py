"""Speech on any device: the device and compute type chosen, any model folder, clips batched side by side."""

from pathlib import Path

import ctranslate2
import numpy as np
import pytest
from threadpoolctl import threadpool_info
from random_whisper import random_whisper

from merr_builder.assets import AssetError, sha256_file, whisper_base_dir
from merr_builder.config import BuildConfig, IngestConfig, SpeechConfig
from merr_builder.ingest import ClipSource, probe
from merr_builder.pipeline import wants_gpu
from merr_builder.runner import stage_key
from merr_builder.speech.faster_whisper import resolved_compute_type
from merr_builder.speech.stage import GPU_BATCH_SIZE, SpeechStage, clips_side_by_side
from merr_builder.stage import PartitionBatch


def test_device_auto_is_the_cpu_here_with_int8_and_no_batching():
    assert ctranslate2.get_cuda_device_count() == 0  # (this test describes a machine without a GPU)
    stage = SpeechStage(SpeechConfig())
    asr = stage.analyser.asr
    assert (asr.device, asr.compute_type) == ("cpu", "int8") and asr.model.model.compute_type == "int8_float32"
    assert stage.side_by_side == 1
    # What auto means on a GPU, and an explicit batch on the CPU.
    assert resolved_compute_type("auto", "cuda") == "float16" and resolved_compute_type("int8_float16", "cuda") == "int8_float16"
    assert clips_side_by_side(SpeechConfig(batch_size=3), asr) == 3 and GPU_BATCH_SIZE > 1


def test_speech_is_placed_on_gpu_workers_unless_told_cpu():
    assert wants_gpu(SpeechStage, BuildConfig())
    assert not wants_gpu(SpeechStage, BuildConfig(speech=SpeechConfig(device="cpu")))
    assert not wants_gpu(SpeechStage, BuildConfig(speech=SpeechConfig(backend="none")))


def test_the_batch_size_is_not_in_the_stage_key_and_the_device_is():
    plain = SpeechConfig()
    assert SpeechConfig(batch_size=8).fingerprint() == plain.fingerprint()
    assert SpeechConfig(compute_type="float32").fingerprint() != plain.fingerprint()
    assert SpeechConfig(device="cpu").fingerprint() != plain.fingerprint()


def test_a_model_folder_given_by_path_is_loaded_and_hashed(tmp_path, clips):
    folder = random_whisper(tmp_path / "tiny-whisper", "tiny-test", whisper_base_dir() / "tokenizer.json")
    config = BuildConfig(speech=SpeechConfig(model_dir=folder))
    recorded = SpeechStage.models(config)["asr"]
    assert recorded == {"name": "tiny-whisper", "file": str(folder / "model.bin"), "sha256": sha256_file(folder / "model.bin")}
    stage = SpeechStage(config.speech)
    assert stage.analyser.asr.model_dir == folder
    transcript = stage.analyser.asr.transcribe(_audio(clips.speech["speech_en_happy"]), "en", "transcribe")
    assert transcript.language == "en"  # random weights: the words are noise, but decoded through the real path

    # The model's content keys the stage: new weights in the same folder rerun it.
    key = stage_key(SpeechStage, config, "upstream")
    random_whisper(folder, "tiny-test", whisper_base_dir() / "tokenizer.json", seed=1)
    assert stage_key(SpeechStage, config, "upstream") != key

    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="holds no model.bin"):
        SpeechStage.models(BuildConfig(speech=SpeechConfig(model_dir=tmp_path / "empty")))


def _audio(path: Path):
    from merr_builder.media import decode_audio

    return decode_audio(str(path))


def test_clips_side_by_side_get_the_words_and_timings_they_get_alone(clips, mer2023_sample, tmp_path):
    """The stage's rows (transcripts, word timings, doubt flags, Whisper's English, tone) are the same
    whether the clips are transcribed one by one or four at a time with their model calls batched, and a
    clip that fails among them fails alone."""
    paths = [*clips.speech.values(), *sorted((mer2023_sample / "video").glob("*.mp4"))]
    broken = tmp_path / "broken.mp4"
    broken.symlink_to(clips.speech["speech_en_calm"])
    (tmp_path / "broken.srt").write_bytes(b"\xff\xfe\x00\xd8 broken \x80\x81\xfe")  # an undecodable sidecar
    clip_infos = [probe(ClipSource(p.stem, str(p)), IngestConfig()) for p in [*paths[:3], broken, *paths[3:]]]
    batch = PartitionBatch(0, [], clip_infos)

    alone = SpeechStage(SpeechConfig())
    together = SpeechStage(SpeechConfig(batch_size=4))
    together.analyser.asr = alone.analyser.asr  # one model: the rows differ only by how the calls were made
    together.side_by_side = 4
    one_by_one, side_by_side_rows = alone.run(batch), together.run(batch)

    assert [q.clip_id for q in side_by_side_rows.quarantined] == [q.clip_id for q in one_by_one.quarantined] == ["broken"]
    assert [r["clip_id"] for r in side_by_side_rows.outputs] == [c.clip_id for c in clip_infos if c.clip_id != "broken"]
    for a, b in zip(one_by_one.outputs, side_by_side_rows.outputs, strict=True):
        assert a == b, a["clip_id"]
    assert any(r["asr_english"] for r in one_by_one.outputs)  # the Chinese clips' English was batched too
    batcher = alone.analyser.asr.batched.batcher
    assert 0 < batcher.batches < batcher.calls  # the calls did go to the model together


def test_the_features_are_computed_with_one_blas_thread_whatever_the_process_runs_with(clips):
    """A Dask worker runs NumPy's BLAS on one thread, a threaded build on all cores; the log-mel features
    (the one BLAS product in ASR) must not differ between them (see OneThreadFeatures)."""
    from threadpoolctl import threadpool_limits

    from merr_builder.speech.faster_whisper import OneThreadFeatures

    asr = SpeechStage(SpeechConfig()).analyser.asr
    extractor = asr.model.feature_extractor
    assert isinstance(extractor, OneThreadFeatures)
    audio = _audio(clips.speech["speech_en_angry"])
    with threadpool_limits(limits=1, user_api="blas"):
        on_one = extractor(audio)
    with threadpool_limits(limits=2, user_api="blas"):
        on_two = extractor(audio)
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert np.array_equal(on_one, on_two) and set(inside) == {2}  # (the limit was this call's alone)


def test_the_rendezvous_batches_waiting_calls_by_key_and_keeps_errors_to_their_own_thread():
    """CallBatcher alone, over a plain function: members' calls wait for one another and go out grouped
    by key; a batch that fails is retried call by call, so only the failing call's thread sees the error;
    a thread that is not a member is never kept waiting."""
    import threading

    from merr_builder.speech.batching import CallBatcher

    batches: list[tuple[str, list[int]]] = []

    def run_group(key, requests):
        batches.append((key, list(requests)))
        if 13 in requests:
            raise ValueError("thirteen")
        return [r * 10 for r in requests]

    batcher = CallBatcher(run_group)
    results: dict[int, object] = {}
    inside = threading.Barrier(4)  # all four are members before any calls (a deterministic first batch)

    def member(value: int) -> None:
        with batcher.member():
            inside.wait()
            try:
                results[value] = batcher.call("odd" if value % 2 else "even", value)
            except ValueError as error:
                results[value] = error

    threads = [threading.Thread(target=member, args=(v,)) for v in (2, 4, 13, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[2] == 20 and results[4] == 40 and results[7] == 70 and isinstance(results[13], ValueError)
    # One call per key for the four (in the order they arrived, which threads decide), then the failed
    # batch call by call.
    made = sorted((key, sorted(requests)) for key, requests in batches)
    assert made == [("even", [2, 4]), ("odd", [7]), ("odd", [7, 13]), ("odd", [13])]
    assert (batcher.batches, batcher.calls) == (2, 4)
    assert not batcher.is_member()  # (this thread): its calls would go straight to the model
