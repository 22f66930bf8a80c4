import subprocess
import tracemalloc
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from merr_builder.config import IngestConfig, MediaConfig
from merr_builder.ingest import ClipSource, probe
from merr_builder.media import AUDIO_SAMPLE_RATE, ClipAudio, decode_audio, iter_frames, iter_packed_frames, load_clip_media, packet_times
from merr_builder.quarantine import ClipError, ErrorKind


def _probe(path: Path):
    return probe(ClipSource(path.stem, str(path)), IngestConfig())


def test_audio_is_16k_mono_float32_of_the_stream_length(clips):
    clip = _probe(clips.speech["speech_en_happy"])
    audio = decode_audio(clip.source_path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / AUDIO_SAMPLE_RATE == pytest.approx(clip.audio_duration_s, abs=0.05)
    assert 0.01 < float(np.sqrt(np.mean(audio**2))) < 1.0  # speech, not silence or clipping


def test_audio_streams_in_blocks_equal_to_the_whole(clips):
    path = str(clips.speech["speech_en_happy"])
    whole = decode_audio(path)
    blocks = list(ClipAudio(path).blocks(block_s=0.5))
    assert all(len(b) == AUDIO_SAMPLE_RATE // 2 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= AUDIO_SAMPLE_RATE // 2
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    stream = ClipAudio(path).blocks(block_s=0.5)
    next(stream)
    stream.close()  # a reader that stops early ends ffmpeg without an error


def test_a_clip_is_its_video_audio_past_the_video_end_is_left_out(shared_data, tmp_path):
    path = tmp_path / "long_audio.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(shared_data / "single_face.mp4"), "-f", "lavfi", "-i",
                    "sine=frequency=220:sample_rate=16000:duration=30", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                    str(path)], check=True)  # fmt: skip
    clip = _probe(path)
    assert clip.duration_s == pytest.approx(2.4, abs=0.01) and clip.audio_duration_s == pytest.approx(30, abs=0.1)
    heard = sum(len(b) for b in ClipAudio(str(path), clip.duration_s).blocks()) / AUDIO_SAMPLE_RATE
    assert heard == pytest.approx(2.4, abs=0.03)
    assert load_clip_media(clip, MediaConfig()).audio_duration_s == pytest.approx(2.4, abs=0.03)


def test_audio_that_does_not_decode_names_the_file(clips):
    with pytest.raises(ClipError) as err:
        list(ClipAudio(str(clips.text_as_mp4)).blocks())
    assert err.value.kind == ErrorKind.DECODE_ERROR and str(clips.text_as_mp4) in err.value.message


def test_a_sine_tone_decodes_at_its_frequency(clips):
    audio = decode_audio(str(clips.good_synthetic))
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * AUDIO_SAMPLE_RATE / len(audio)
    assert peak_hz == pytest.approx(440, abs=2)


def test_frames_at_the_sample_rate(mer2023_sample: Path):
    clip = _probe(mer2023_sample / "video" / "sample_00000338.mp4")  # 4.56 s
    frames = list(iter_frames(clip, 5.0))
    assert len(frames) == 23  # as PROVENANCE.md counts for this clip at 5 fps
    assert [f.index for f in frames] == [round(i * 0.2 * 25) for i in range(len(frames))]  # video frame indices
    assert frames[1].time_s == pytest.approx(0.2)
    assert frames[0].rgb.shape == (378, 672, 3)


def test_every_frame_on_request(shared_data: Path):
    clip = _probe(shared_data / "single_face.mp4")  # 72 frames at 30 fps
    frames = list(iter_frames(clip, None))
    assert len(frames) == 72
    times = [f.time_s for f in frames]
    assert times == sorted(times) and times[0] == 0.0
    assert times[-1] == pytest.approx(71 / 30, abs=0.02)


def test_rotation_is_honoured(clips, shared_data):
    upright = next(iter_frames(_probe(shared_data / "single_face.mp4"), 5.0)).rgb
    rotated = next(iter_frames(_probe(clips.rotated_90), 5.0)).rgb
    assert upright.shape == (360, 640, 3) and rotated.shape == (640, 360, 3)
    # The rotated clip's frame is the upright frame turned a quarter (one way or the other).
    errors = [np.abs(np.rot90(upright, k).astype(int) - rotated.astype(int)).mean() for k in (1, 3)]
    assert min(errors) < 3 < max(errors)


def test_frame_memory_stays_bounded_on_a_long_clip(shared_data: Path):
    clip = _probe(shared_data / "WolfgangLanger_Pexels.mp4")  # 19.7 s, 472 frames of 640x360
    frame_bytes = 640 * 360 * 3
    tracemalloc.start()
    count = 0
    for _ in iter_frames(clip, None):
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 472
    assert peak < 8 * frame_bytes, f"peak {peak / 1e6:.1f} MB for {count} frames of {frame_bytes / 1e6:.2f} MB"


def test_k_uniform_frames_as_jpeg(mer2023_sample: Path):
    clip = _probe(mer2023_sample / "video" / "samplenew_00061200.mp4")  # 1920x808, 2.4 s
    media = load_clip_media(clip, MediaConfig(k_frames=16, frame_max_side=448))
    assert len(media.frames_jpeg) == 16
    images = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in media.frames_jpeg]
    assert all(img is not None and max(img.shape[:2]) <= 448 for img in images)
    assert images[0].shape[1] / images[0].shape[0] == pytest.approx(1920 / 808, rel=0.02)
    assert media.frame_times_s == sorted(media.frame_times_s) and media.frame_times_s[-1] < clip.video_duration_s
    assert media.audio_duration_s == pytest.approx(len(decode_audio(clip.source_path, until_s=clip.duration_s)) / AUDIO_SAMPLE_RATE)


def test_a_cut_off_clip_is_reported_truncated(clips):
    clip = _probe(clips.truncated_faststart)  # its index says 6 s; half the data is gone
    with pytest.raises(ClipError) as err:
        load_clip_media(clip, MediaConfig())
    assert err.value.kind == ErrorKind.TRUNCATED
    assert str(clips.truncated_faststart) in err.value.message and "truncated" in err.value.message


def test_an_unreadable_stream_is_a_decode_error(clips, tmp_path: Path):
    clip = _probe(clips.good_synthetic)
    gone = replace(clip, source_path=str(tmp_path / "vanished.mp4"))
    with pytest.raises(ClipError) as err:
        load_clip_media(gone, MediaConfig())
    assert err.value.kind == ErrorKind.DECODE_ERROR and "vanished.mp4" in err.value.message


def _variant(source: Path, out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *args, str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def decode_cases(clips, shared_data: Path, mer2023_sample: Path, tmp_path_factory) -> dict[str, tuple[Path, float]]:
    """Clips of every kind the in-process decode handles differently, with the largest pixel difference
    allowed against the CLI: 0 where both hand over the decoder's own I420 planes (the same H.264 decode,
    bit-exact by the standard), a little where swscale converts (its versions and filters differ)."""
    face, folder = shared_data / "single_face.mp4", tmp_path_factory.mktemp("decode")
    corrupt = bytearray(face.read_bytes())
    for i in range(len(corrupt) // 2, len(corrupt) // 2 + 3000):
        corrupt[i] ^= 0x55  # a stretch of damaged packets mid-stream
    (folder / "corrupt_middle.mp4").write_bytes(bytes(corrupt))
    return {
        "mer2023": (mer2023_sample / "video" / "sample_00000727.mp4", 0),
        "rotated 90": (clips.rotated_90, 0),
        "rotated 270": (_variant(face, folder / "rot270.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=270"), 0),
        "rotated 180": (_variant(face, folder / "rot180.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=180"), 0),
        "10-bit": (_variant(face, folder / "ten_bit.mp4", "-vf", "scale=320:180", "-pix_fmt", "yuv420p10le", "-c:v", "libx264"), 0),
        "damaged packets": (folder / "corrupt_middle.mp4", 0),
        "full-range MJPEG (range converted)": (_variant(face, folder / "mjpeg.avi", "-c:v", "mjpeg", "-q:v", "3"), 2),
        "4:4:4 (chroma subsampled)": (_variant(face, folder / "yuv444.mp4", "-pix_fmt", "yuv444p", "-c:v", "libx264"), 8),
        "odd size (RGB)": (_variant(face, folder / "odd.mp4", "-vf", "scale=321:179", "-c:v", "mpeg4", "-q:v", "3"), 16),
    }


@pytest.mark.parametrize("case", ["mer2023", "rotated 90", "rotated 270", "rotated 180", "10-bit", "damaged packets",
                                  "full-range MJPEG (range converted)", "4:4:4 (chroma subsampled)", "odd size (RGB)"])  # fmt: skip
def test_the_in_process_decode_gives_the_ffmpeg_clis_frames(decode_cases, case):
    """media.decoder pyav (FFmpeg's libraries in this process) against the ffmpeg CLI through a pipe: the
    same frames, indices and times, upright, of the displayed size, I420 at video range."""
    path, tolerance = decode_cases[case]
    clip = _probe(path)
    ours, cli = list(iter_packed_frames(clip, "pyav")), list(iter_packed_frames(clip, "ffmpeg"))
    assert len(ours) == len(cli) > 10
    assert [(f.index, f.time_s) for f in ours] == [(f.index, f.time_s) for f in cli]
    for a, b in zip(ours, cli):
        assert a.data.shape == b.data.shape and a.frame().rgb.shape == (clip.height, clip.width, 3)
        difference = np.abs(a.data.astype(int) - b.data.astype(int))
        assert difference.max() <= tolerance and difference.mean() <= max(0.5, tolerance / 10), (case, a.index)


def test_packet_times_are_ffprobes(mer2023_sample: Path, clips):
    for path in [mer2023_sample / "video" / "sample_00000727.mp4", clips.rotated_90]:
        probed = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                                 "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        times = packet_times(str(path))
        assert len(times) == len(probed) > 10
        assert np.allclose(times, sorted(float(t.strip(",")) for t in probed), atol=1e-6)


def test_a_file_that_does_not_decode_in_process_names_the_file(clips):
    clip = _probe(clips.good_synthetic)
    with pytest.raises(ClipError) as err:
        list(iter_packed_frames(replace(clip, source_path=str(clips.text_as_mp4)), "pyav"))
    assert err.value.kind == ErrorKind.DECODE_ERROR and str(clips.text_as_mp4) in err.value.message
