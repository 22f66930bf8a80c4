"""Media: decode audio and frames with the ffmpeg CLI, streamed through pipes so memory stays bounded;
the faces stage's one pass over every frame, and packet times, through FFmpeg's libraries in-process
(PyAV): on one core, the pipe alone costs a third of a decode.

ffmpeg honours rotation metadata itself (autorotate), and the in-process decode turns frames by the
rotation ingest read, so every frame here is upright and of the displayed size that ingest reports.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange

from merr_builder.config import BuildConfig, MediaConfig, VideoDecoder
from merr_builder.names import path_bytes
from merr_builder.records import ClipInfo
from merr_builder.quarantine import ClipError, ErrorKind, StageResult, map_clips
from merr_builder.schema import MEDIA_SCHEMA
from merr_builder.stage import PartitionBatch, StageDefaults

T = TypeVar("T")

AUDIO_SAMPLE_RATE = 16_000
_FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-v", "error")


@dataclass(frozen=True)
class Frame:
    index: int  # the frame's index in the video (every decoded frame counted)
    time_s: float  # presentation time in the clip
    rgb: np.ndarray  # H x W x 3 uint8, upright


@dataclass(frozen=True)
class MediaOutput:
    """The media stage's output row (schema.MEDIA_SCHEMA)."""

    clip_id: str
    audio_duration_s: float | None
    frames_jpeg: list[bytes]
    frame_times_s: list[float]


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no message"


AUDIO_BLOCK_S = 10.0  # seconds of audio read from ffmpeg at a time


def iter_audio_blocks(path: str, block_s: float = AUDIO_BLOCK_S, sample_rate: int = AUDIO_SAMPLE_RATE,
                      until_s: float | None = None) -> Iterator[np.ndarray]:  # fmt: skip
    """The first audio stream as mono float32 at `sample_rate`, streamed from ffmpeg in blocks of `block_s`
    seconds (the last one shorter): a clip's audio is never held whole. With `until_s`, only its first
    `until_s` seconds (a clip is its video: audio that outlasts it is not the clip's)."""
    limit = ["-t", f"{until_s:.6f}"] if until_s else []
    cmd = [*_FFMPEG, "-i", path, "-map", "0:a:0", "-vn", *limit, "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]
    block_bytes = max(1, int(block_s * sample_rate)) * 4
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty ffmpeg cannot block on it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        finished = False
        try:
            while True:
                block = np.empty(block_bytes // 4, dtype="<f4")
                view, filled = memoryview(block).cast("B"), 0
                while filled < block_bytes and (got := proc.stdout.readinto(view[filled:])):
                    filled += got
                if filled:
                    yield block[: filled // 4]
                if filled < block_bytes:
                    break
            finished = True
        finally:
            if not finished:  # the reader stopped early (or failed): ffmpeg is not needed any more
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
        stderr.seek(0)
        message = stderr.read()
    if code != 0:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{path}: audio does not decode ({_last_line(message)})")


def decode_audio(path: str, sample_rate: int = AUDIO_SAMPLE_RATE, expected_s: float | None = None, until_s: float | None = None) -> np.ndarray:
    """The first audio stream as one array (mono float32 at `sample_rate`), its first `until_s` seconds
    when given; read in one block when `expected_s` is about right. The build's stages stream it instead
    (`ClipAudio`)."""
    blocks = list(iter_audio_blocks(path, (expected_s or 30.0) + 1.0, sample_rate, until_s))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks) if blocks else np.empty(0, dtype="<f4")


@dataclass(frozen=True)
class ClipAudio:
    """A clip's audio, decoded from its source on demand and streamed in blocks, so that the stages that
    listen (faces, speech) hold a bounded amount of it whatever the clip's length."""

    path: str
    until_s: float | None = None  # the clip's duration: the audio past the video's end is left out

    def blocks(self, block_s: float = AUDIO_BLOCK_S) -> Iterator[np.ndarray]:
        return iter_audio_blocks(self.path, block_s, until_s=self.until_s)


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Aspect-preserving size whose longer side is at most `max_side`, even-sized for the encoders."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


@dataclass(frozen=True)
class PackedFrame:
    """One decoded frame as ffmpeg wrote it: planar I420 (half the bytes of RGB) where both sides are
    even, RGB otherwise. `frame()` unpacks it."""

    index: int
    time_s: float
    data: np.ndarray

    def frame(self) -> Frame:
        rgb = self.data if self.data.ndim == 3 else cv2.cvtColor(self.data, cv2.COLOR_YUV2RGB_I420)
        return Frame(self.index, self.time_s, rgb)


def iter_packed_frames(clip: ClipInfo, decoder: VideoDecoder) -> Iterator[PackedFrame]:
    """Every frame of a clip, upright, in one decoding pass, packed: for a stage that reads some frames
    twice and keeps them rather than decode again. Frame n is the n-th decoded frame, timed by the n-th
    packet time (`packet_times`), so indices and times agree with every other reader here."""
    times = packet_times(clip.path, clip.video_stream)
    origin = times[0] if times else 0.0
    step = 1.0 / clip.fps if clip.fps > 0 else 0.04
    decoded = _packed_by_pyav(clip) if decoder == "pyav" else _packed_by_ffmpeg(clip)
    for n, data in enumerate(decoded):
        time_s = times[n] - origin if n < len(times) else (times[-1] - origin if times else 0.0) + (n - len(times) + 1) * step
        yield PackedFrame(n, time_s, data)


def _packs(width: int, height: int) -> bool:
    """Whether frames of this displayed size are kept as I420 (both sides even), else as RGB."""
    return width % 2 == 0 and height % 2 == 0


def _packed_by_ffmpeg(clip: ClipInfo) -> Iterator[np.ndarray]:
    width, height = clip.width, clip.height
    packed = _packs(width, height)
    cmd = [*_FFMPEG, "-i", clip.path, "-map", f"0:v:{clip.video_stream}", "-an", "-vf", f"scale={width}:{height}"]
    cmd += ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p" if packed else "rgb24", "pipe:1"]
    return _stream_raw(cmd, (height * 3 // 2, width) if packed else (height, width, 3), clip.source_path)


@contextmanager
def _video_stream(clip_path: str, source_path: str, index: int) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """A clip's container opened by PyAV and its video stream v:`index`; a name that is not UTF-8 is
    opened as a file object (PyAV passes names to FFmpeg as UTF-8). A file FFmpeg cannot open, or
    without that stream, is the clip's decode error."""
    raw = path_bytes(clip_path)
    with ExitStack() as held:
        try:
            handle = held.enter_context(open(raw, "rb")) if raw else None
            container = held.enter_context(av.open(handle or clip_path, mode="r"))
        except (av.error.FFmpegError, OSError) as error:
            raise ClipError(ErrorKind.DECODE_ERROR, f"{source_path}: video does not open ({error})") from error
        if index >= len(container.streams.video):
            raise ClipError(ErrorKind.DECODE_ERROR, f"{source_path}: no video stream v:{index}")
        yield container, container.streams.video[index]


def _packed_by_pyav(clip: ClipInfo) -> Iterator[np.ndarray]:
    """`_packed_by_ffmpeg`'s frames decoded in this process. As the ffmpeg CLI does, a packet that does
    not decode is passed over, and the demuxer stops at damage it cannot read past; a clip none of whose
    packets decodes is an error."""
    turns = (clip.rotation // 90) % 4  # display rotation, counter-clockwise
    coded_w, coded_h = (clip.height, clip.width) if turns % 2 else (clip.width, clip.height)
    pixel_format = "yuv420p" if _packs(clip.width, clip.height) else "rgb24"
    frames, error = 0, None
    with _video_stream(clip.path, clip.source_path, clip.video_stream) as (container, stream):
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as failure:  # a damaged packet
                    error = failure
                    continue
                for frame in decoded:
                    if (frame.width, frame.height, frame.format.name) != (coded_w, coded_h, pixel_format):
                        frame = _reformatted(frame, coded_w, coded_h, pixel_format)
                    data = _i420(frame) if pixel_format == "yuv420p" else frame.to_ndarray(format=pixel_format)
                    frames += 1
                    yield _turned(data, turns) if turns else data
        except av.error.FFmpegError as failure:  # the demuxer cannot read on
            error = failure
    if frames == 0:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{clip.source_path}: video does not decode ({error or 'no frames'})")


def _i420(frame: av.VideoFrame) -> np.ndarray:
    """A yuv420p frame's planes copied once into the stacked I420 layout (PyAV's to_ndarray copies twice)."""
    width, height = frame.width, frame.height
    data = np.empty(height * width * 3 // 2, dtype=np.uint8)
    start = 0
    for plane, (rows, columns) in zip(frame.planes, ((height, width), (height // 2, width // 2), (height // 2, width // 2))):
        lines = np.frombuffer(plane, dtype=np.uint8)[: rows * plane.line_size].reshape(rows, plane.line_size)[:, :columns]
        data[start : start + rows * columns].reshape(rows, columns)[:] = lines
        start += rows * columns
    return data.reshape(height * 3 // 2, width)


def _reformatted(frame: av.VideoFrame, width: int, height: int, pixel_format: str) -> av.VideoFrame:
    """A frame scaled or converted as the CLI's `-pix_fmt` would: I420 at video range (what
    `PackedFrame.frame` assumes), a full-range (JPEG) source's range converted; one thread."""
    source_range = frame.color_range or (ColorRange.JPEG if frame.format.name.startswith("yuvj") else ColorRange.MPEG)
    target_range = ColorRange.MPEG if pixel_format == "yuv420p" else ColorRange.JPEG
    return frame.reformat(width=width, height=height, format=pixel_format, src_color_range=source_range,
                          dst_color_range=target_range, threads=1)  # fmt: skip


def _turned(data: np.ndarray, turns: int) -> np.ndarray:
    """A decoded frame (I420 planes stacked, or RGB) turned `turns` quarters counter-clockwise, as
    ffmpeg's autorotate does."""
    if data.ndim == 3:
        return np.ascontiguousarray(np.rot90(data, turns))
    coded_h, coded_w = data.shape[0] * 2 // 3, data.shape[1]
    flat = data.reshape(-1)
    luma = flat[: coded_w * coded_h].reshape(coded_h, coded_w)
    chroma = flat[coded_w * coded_h :].reshape(2, coded_h // 2, coded_w // 2)
    planes = [np.rot90(plane, turns) for plane in (luma, chroma[0], chroma[1])]
    width = planes[0].shape[1]
    return np.concatenate([p.reshape(-1) for p in planes]).reshape(-1, width)


def _stream_rgb(cmd: list[str], width: int, height: int, path: str) -> Iterator[np.ndarray]:
    """Run ffmpeg writing rgb24 frames to stdout; yield them one at a time."""
    return _stream_raw(cmd, (height, width, 3), path)


def _stream_raw(cmd: list[str], shape: tuple[int, ...], path: str) -> Iterator[np.ndarray]:
    """Run ffmpeg writing raw frames of `shape` (uint8) to stdout; yield them one at a time."""
    frame_bytes = math.prod(shape)
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty ffmpeg cannot block on it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, bufsize=frame_bytes)
        try:
            assert proc.stdout is not None
            while True:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                yield np.frombuffer(buf, dtype=np.uint8).reshape(shape)
        finally:
            proc.stdout.close()  # type: ignore[union-attr]
            code = proc.wait()
        stderr.seek(0)
        message = stderr.read()
    if code != 0:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{path}: video does not decode ({_last_line(message)})")


def packet_times(path: str, stream: int = 0) -> list[float]:
    """Presentation times of the packets (one per frame) of video stream v:`stream`, without decoding;
    cached per file. They are the file's own times: a stream may start late (at 100 s, say), so callers
    measure from the first."""
    stat = os.stat(path)
    return list(_packet_times_cached(path, stream, stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=64)
def _packet_times_cached(path: str, stream: int, size: int, mtime_ns: int) -> tuple[float, ...]:  # size, mtime key it
    # Demuxed in this process (ffprobe -show_entries packet=pts_time gives the same times, to its printed
    # microsecond, at 15 times the cost: a process per clip). A damaged file gives the packets before the
    # damage, and one that does not open none.
    times = []
    try:
        with _video_stream(path, path, stream) as (container, video):
            for packet in container.demux(video):
                if packet.pts is not None:
                    times.append(float(packet.pts * video.time_base))
    except (ClipError, av.error.FFmpegError):
        pass
    return tuple(sorted(times))


_EPS = 1e-4  # seconds: tolerance of time comparisons (ffprobe prints times to the microsecond)


def sample_positions(times: list[float], step: float) -> list[int]:
    """Indices of the frames a sampling every `step` seconds takes: the first frame at or after each
    grid time. The same rule runs inside ffmpeg (`_select_every`), so frames and indices agree."""
    chosen, target = [], 0.0
    for index, t in enumerate(times):
        if t >= target - _EPS:
            chosen.append(index)
            target += step * (1 + math.floor((t - target + _EPS) / step))
    return chosen


def sampled_indices(clip: ClipInfo, sample_fps: float | None) -> set[int] | None:
    """The indices of the frames sampling at `sample_fps` takes (None: every frame)."""
    return None if sample_fps is None else set(sample_positions(packet_times(clip.path, clip.video_stream), 1.0 / sample_fps))


def _select_every(step: float) -> str:
    # ld(0) holds the next grid time; st() stores the one after the frame taken and returns it (> 0).
    return (
        f"select='if(gte(t,ld(0)-{_EPS}),st(0,ld(0)+{step:.9f}*(1+floor((t-ld(0)+{_EPS})/{step:.9f}))))'"
    )


def iter_frames(clip: ClipInfo, sample_fps: float | None, max_side: int | None = None) -> Iterator[Frame]:
    """Frames of a clip at `sample_fps` (None: every frame), upright, one in memory at a time.

    Sampling takes real frames (never blends or duplicates), so each comes with its exact index and time.
    """
    if sample_fps is None:
        yield from iter_frames_between(clip, 0.0, float("inf"), max_side)
        return
    width, height = scaled_size(clip.width, clip.height, max_side) if max_side else (clip.width, clip.height)
    times = packet_times(clip.path, clip.video_stream)
    positions = sample_positions(times, 1.0 / sample_fps)
    vf = f"{_select_every(1.0 / sample_fps)},scale={width}:{height}"
    cmd = [*_FFMPEG, "-i", clip.path, "-copyts", "-map", f"0:v:{clip.video_stream}", "-an", "-vf", vf]
    cmd += ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    origin = times[0] if times else 0.0
    for n, rgb in enumerate(_stream_rgb(cmd, width, height, clip.source_path)):
        index = positions[n] if n < len(positions) else (positions[-1] + 1 if positions else n)
        time_s = times[index] - origin if index < len(times) else n / sample_fps
        yield Frame(index=index, time_s=time_s, rgb=rgb)


def iter_frames_between(
    clip: ClipInfo, start_s: float, end_s: float, max_side: int | None = None
) -> Iterator[Frame]:
    """Every decoded frame whose time lies in [start_s, end_s]; `Frame.index` is its index in the video."""
    return iter_frames_in(clip, [(start_s, end_s)], max_side)


def iter_frames_in(
    clip: ClipInfo, windows: list[tuple[float, float]], max_side: int | None = None
) -> Iterator[Frame]:
    """Every frame whose time lies in any of the windows, in one decoding pass that starts just before
    the first window (input seek lands on a keyframe; -copyts keeps the true times)."""
    width, height = scaled_size(clip.width, clip.height, max_side) if max_side else (clip.width, clip.height)
    times = packet_times(clip.path, clip.video_stream)
    if not times:
        raise ClipError(ErrorKind.DECODE_ERROR, f"{clip.source_path}: the video stream has no frames")
    origin = times[0]
    wanted = [i for i, t in enumerate(times) if any(a - 1e-6 <= t - origin <= b + 1e-6 for a, b in windows)]
    if not wanted:
        return
    terms = "+".join(
        f"between(t,{times[idx[0]] - _EPS:.6f},{times[idx[-1]] + _EPS:.6f})"
        for idx in _runs(wanted)
    )
    seek = max(0.0, times[wanted[0]] - origin - 1.0)  # input seeking counts from the file's start, not from 0
    vf = f"select='{terms}',scale={width}:{height}"
    cmd = [*_FFMPEG, "-ss", f"{seek:.6f}", "-i", clip.path, "-copyts", "-map", f"0:v:{clip.video_stream}", "-an", "-vf", vf]
    cmd += ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    for position, rgb in enumerate(_stream_rgb(cmd, width, height, clip.source_path)):
        if position >= len(wanted):
            break
        index = wanted[position]
        yield Frame(index=index, time_s=times[index] - origin, rgb=rgb)


def _runs(indices: list[int]) -> list[list[int]]:
    """Consecutive runs of sorted indices: [1,2,3,7,8] → [[1,2,3],[7,8]]."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ClipError(ErrorKind.DECODE_ERROR, "a frame could not be encoded as JPEG")
    return buf.tobytes()


def uniform_frames(clip: ClipInfo, config: MediaConfig) -> tuple[list[bytes], list[float]]:
    """K frames spaced evenly over the video stream, as JPEG, in one decoding pass."""
    duration = clip.video_duration_s
    k = config.k_frames
    width, height = scaled_size(clip.width, clip.height, config.frame_max_side)
    vf = f"fps={k}/{duration:.6f}:round=near,scale={width}:{height}"
    cmd = [*_FFMPEG, "-i", clip.path, "-map", f"0:v:{clip.video_stream}", "-an", "-vf", vf, "-frames:v", str(k)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    jpegs = [encode_jpeg(rgb, config.jpeg_quality) for rgb in _stream_rgb(cmd, width, height, clip.source_path)]
    step = duration / k
    decoded_s = len(jpegs) * step
    if duration - decoded_s > max(config.truncation_tolerance_s, step):
        raise ClipError(
            ErrorKind.TRUNCATED,
            f"{clip.source_path}: video decodes to about {decoded_s:.2f} s of the {duration:.2f} s its container "
            "declares (truncated or corrupt file)",
        )
    return jpegs, [round(i * step, 4) for i in range(len(jpegs))]


def load_clip_media(clip: ClipInfo, config: MediaConfig) -> MediaOutput:
    frames, times = uniform_frames(clip, config)
    audio_s = None
    if clip.has_audio:  # decoded through once to check it is whole; the stages that listen stream it again
        audio_s = sum(len(block) for block in iter_audio_blocks(clip.path, until_s=clip.duration_s)) / AUDIO_SAMPLE_RATE
        declared = min(clip.audio_duration_s or clip.duration_s, clip.duration_s)
        if declared - audio_s > config.truncation_tolerance_s:
            raise ClipError(
                ErrorKind.TRUNCATED,
                f"{clip.source_path}: audio decodes to {audio_s:.2f} s of the {declared:.2f} s its container "
                "declares (truncated or corrupt file)",
            )
    return MediaOutput(clip.clip_id, audio_s, frames, times)


def map_clips_with_audio(
    stage: str, batch: PartitionBatch, analyse: Callable[[ClipInfo, ClipAudio | None], T], pool: Executor | None = None
) -> StageResult[T]:
    """Run `analyse(clip, audio)` on each clip of a batch (audio None for a clip without), a failing clip
    quarantined alone; in `pool`'s threads side by side when one is given (the outputs keep clip order)."""
    clips = batch.clips  # the clips whose audio the media stage found whole

    def analysed(clip: ClipInfo) -> T:
        return analyse(clip, ClipAudio(clip.path, clip.duration_s) if clip.has_audio else None)

    if pool is None:
        return map_clips(stage, clips, analysed, lambda c: (c.clip_id, c.source_path))
    futures = [(clip, pool.submit(analysed, clip)) for clip in clips]
    return map_clips(stage, futures, lambda item: item[1].result(), lambda item: (item[0].clip_id, item[0].source_path))


class MediaStage(StageDefaults):  # (no models: ffmpeg only)
    """Check each clip's audio decodes whole (16 kHz mono float32) and take K uniform frames (JPEG)."""

    name = "media"
    version = "3"  # 3: the video stream chosen at ingest (v:N), seeking from the stream's own start; 2: the audio is streamed from the source by the stages that listen, not stored
    config_section = "media"
    output_schema = MEDIA_SCHEMA

    def __init__(self, config: MediaConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: BuildConfig) -> "MediaStage":
        return cls(config.media)

    def run(self, batch: PartitionBatch) -> StageResult[MediaOutput]:
        return map_clips(
            self.name, batch.clips, lambda c: load_clip_media(c, self.config), lambda c: (c.clip_id, c.source_path)
        )
