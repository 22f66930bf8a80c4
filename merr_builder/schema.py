"""The versioned pyarrow schemas of every table the build writes, each column documented.

`schemas/` holds these rendered as Markdown (`python -m merr_builder.schema schemas/`); a test keeps the
two in step. Columns a later stage owns exist now with their final type and stay null until it lands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

from merr_builder.facs import AU_NAMES, BLENDSHAPE_NAMES, EMOTION_PROTOTYPES, EXPRESSION_CLASSES
from merr_builder.names import path_text

SCHEMA_VERSION = "1.8.0"  # 1.8: source_path_bytes, transcript_encoding, subtitle_cut, duplicate_of, video_stream(s); 1.7: vision_patches (merr encode --vision-tower), the main face's box in au_series; 1.6: transcript_en, transcript_en_source; 1.5: facial evidence (au_baseline, prototype_scores, expression_scores, label_agreement); 1.1: face columns (face_frames_share, …); 1.2: speech columns (has_speech, …); 1.3: feat_* (merr encode); 1.4: stage.media keeps no audio samples

EGEMAPS_DIM = 88  # eGeMAPSv02 functionals


def _field(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"merr_table": name, "merr_schema_version": SCHEMA_VERSION})


# One AU intensity per FACS action unit, OpenFace 0-5 scale; null where no face was measured.
AU_STRUCT = pa.struct([pa.field(au, pa.float32()) for au in AU_NAMES])
BOX_STRUCT = pa.struct([pa.field(k, pa.float32()) for k in ("x", "y", "w", "h")])
AU_FRAME_STRUCT = pa.struct(
    [pa.field("frame_index", pa.int32()), pa.field("time_s", pa.float32())]
    + [pa.field(au, pa.float32()) for au in AU_NAMES]
    + [pa.field("box", BOX_STRUCT)]  # the main face's box, as fractions of the frame (null where absent)
)
VISION_PATCHES_STRUCT = pa.struct([pa.field("tokens", pa.int32()), pa.field("width", pa.int32()), pa.field("float16", pa.binary())])

# --- stage outputs (OUT/stages/<stage>/part-*.parquet) -------------------------------------------

INGEST_SCHEMA = _schema(
    "stage.ingest",
    [
        _field("clip_id", pa.string(), "clip identifier: the file stem unless a manifest gives one", False),
        _field("source_path", pa.string(), "absolute path of the clip as found (bytes that are not UTF-8 written \\xNN)", False),
        _field("source_path_bytes", pa.binary(), "the path's raw bytes where its name is not valid UTF-8; null otherwise"),
        _field("fingerprint", pa.string(), "sha256 of the file's bytes; the cache key of every later stage", False),
        _field("size_bytes", pa.int64(), "file size in bytes", False),
        _field("duration_s", pa.float64(), "duration of the video stream read, in seconds (the container's where the stream declares none)", False),
        _field("video_duration_s", pa.float64(), "declared duration of the video stream", False),
        _field("audio_duration_s", pa.float64(), "declared duration of the audio stream; null without audio"),
        _field("fps", pa.float64(), "average frame rate of the video stream", False),
        _field("width", pa.int32(), "displayed width in pixels, after rotation", False),
        _field("height", pa.int32(), "displayed height in pixels, after rotation", False),
        _field("rotation", pa.int32(), "display rotation in degrees from the stream's metadata (0, 90, 180, 270)", False),
        _field("video_codec", pa.string(), "codec of the video stream read", False),
        _field("video_stream", pa.int32(), "the video stream read: ffmpeg's v:N", False),
        _field("video_streams", pa.int32(), "how many video streams the file has (cover art included)", False),
        _field("audio_codec", pa.string(), "codec of the first audio stream; null when there is none"),
        _field("has_audio", pa.bool_(), "whether the file has an audio stream", False),
        _field("sidecar_transcript", pa.string(), "transcript given beside the clip (e.g. MER2023 CSV)"),
        _field("sidecar_source", pa.string(), "where sidecar_transcript came from (file path)"),
        _field("sidecar_encoding", pa.string(), "the encoding that file was read in (utf_8, gb18030, …)"),
        _field("label", pa.string(), "given label, normalised to the MERR set; null when none was given"),
        _field("label_source", pa.string(), "where the given label came from (file path)"),
    ],
)

MEDIA_SCHEMA = _schema(
    "stage.media",
    [
        _field("clip_id", pa.string(), "clip identifier", False),
        _field("audio_duration_s", pa.float64(), "seconds of decoded audio, up to the video's end; null without audio"),
        _field("frames_jpeg", pa.list_(pa.binary()), "K uniformly spaced frames as JPEG", False),
        _field("frame_times_s", pa.list_(pa.float32()), "timestamp of each kept frame", False),
    ],
)

POSE_STRUCT = pa.struct([pa.field(k, pa.float32()) for k in ("yaw", "pitch", "roll")])
FACE_STATS_DIM = 3 * len(AU_NAMES) + 2 * len(BLENDSHAPE_NAMES)
_FACE_STATS_DOC = (
    f"{FACE_STATS_DIM} floats over the main face's sampled frames: AU mean, std, max ({len(AU_NAMES)} each, "
    f"AU_NAMES order), then blendshape mean and std ({len(BLENDSHAPE_NAMES)} each; zeros for backends without)"
)

# Structs, not maps: Hugging Face datasets has no map type.
PROTOTYPE_STRUCT = pa.struct([pa.field(label, pa.float32()) for label in EMOTION_PROTOTYPES])
EXPRESSION_STRUCT = pa.struct([pa.field(name, pa.float32()) for name in EXPRESSION_CLASSES])

# Columns the faces stage owns, shared by its stage output and the shards.
FACE_FIELDS = [
    _field("n_faces", pa.int32(), "people in frame: distinct faces (tracks) seen anywhere in the clip", False),
    _field("face_frames_share", pa.float32(), "share of sampled frames in which a face was found", False),
    _field("face_choice", pa.string(), "how the main person was chosen", False),
    _field("face_backend", pa.string(), "AU extractor that measured the face", False),
    _field("peak_frame_index", pa.int32(), "index in the decoded video of the emotional peak frame", False),
    _field("peak_time_s", pa.float64(), "time of the emotional peak frame in seconds", False),
    _field("peak_frame_jpeg", pa.binary(), "the whole peak frame as JPEG", False),
    _field("peak_face_jpeg", pa.binary(), "the main face at the peak, eyes levelled, square JPEG", False),
    _field("face_box_peak", BOX_STRUCT, "main face box at the peak, as fractions of the frame", False),
    _field("head_pose_peak", POSE_STRUCT, "head yaw, pitch, roll in degrees at the peak; null if unknown"),
    _field("aus_peak", AU_STRUCT, "AU intensities (0-5) of the main face at the peak, above its resting face", False),
    _field("au_baseline", AU_STRUCT, "the main face's resting face: what was taken off every AU (faces/baseline.py)", False),
    _field("blendshapes_peak", pa.list_(pa.float32()), "52 MediaPipe blendshape scores at the peak (BLENDSHAPE_NAMES)"),
    _field("au_series", pa.list_(AU_FRAME_STRUCT), "per sampled frame: index, time, the main face's AUs and box (null if absent)", False),
    _field("face_stats", pa.list_(pa.float32()), _FACE_STATS_DOC, False),
    _field("visual_expression_description", pa.string(), "AU phrases at the peak, MERR style", False),
    _field("pseudo_label", pa.string(), "label whose AU prototype the peak matches best", False),
    _field("pseudo_label_score", pa.float32(), "0-1: how fully the peak shows pseudo_label's prototype", False),
    _field("au_match", pa.bool_(), "whether the peak matches any label's AU prototype (the paper's AU filter)", False),
    _field("prototype_scores", PROTOTYPE_STRUCT, "every label's AU-prototype score at the peak (0-1)", False),
    _field("matched_aus", pa.list_(pa.string()), "the AUs of pseudo_label's prototype present at the peak", False),
    _field("expression_scores", EXPRESSION_STRUCT, "facial-expression classifier's class probabilities on the peak face"),
    _field("classifier_label", pa.string(), "the MERR label of the classifier's top class (null: disgust, or not run)"),
    _field("label_agreement", pa.bool_(), "whether the classifier's label is the AU pseudo-label (null: not run)"),
]

FACES_SCHEMA = _schema("stage.faces", [_field("clip_id", pa.string(), "clip identifier", False), *FACE_FIELDS])


# Columns the speech stage owns that the shards carry too.
SPEECH_FIELDS = [
    _field("transcript", pa.string(), "what the person says (sidecar or ASR); null without either, see transcript_error"),
    _field("transcript_language", pa.string(), "ISO 639-1 language of the transcript (a script guess for sidecars)"),
    _field("transcript_source", pa.string(), "sidecar:<file> or asr:<backend>"),
    _field("transcript_encoding", pa.string(), "the encoding a sidecar transcript was read in (utf_8, gb18030, cp1252, …); null for ASR"),
    _field("transcript_flags", pa.list_(pa.string()), "reasons to doubt an ASR transcript (speech/flags.py)"),
    _field("transcript_error", pa.string(), "why there is no transcript"),
    _field("has_speech", pa.bool_(), "ASR heard speech in the audio", False),
    _field("speech_rate", pa.float32(), "words per second over the spoken span (from word timestamps)"),
    _field("pause_ratio", pa.float32(), "share of the spoken span in pauses between words"),
    _field("egemaps", pa.list_(pa.float32()), f"eGeMAPSv02 functionals ({EGEMAPS_DIM} values, openSMILE order)"),
]
WORD_STRUCT = pa.struct([("start", pa.float32()), ("end", pa.float32()), ("word", pa.string()), ("probability", pa.float32())])
SEGMENT_STRUCT = pa.struct([("start", pa.float32()), ("end", pa.float32()), ("text", pa.string())])

SPEECH_SCHEMA = _schema(
    "stage.speech",
    [
        _field("clip_id", pa.string(), "clip identifier", False),
        *SPEECH_FIELDS,
        _field("speech_span_s", pa.float32(), "seconds from the first word's start to the last word's end"),
        _field("asr_backend", pa.string(), "ASR backend that ran; null when none did"),
        _field("asr_text", pa.string(), "the ASR text, also where a sidecar won"),
        _field("asr_language", pa.string(), "language ASR detected or was told"),
        _field("asr_language_probability", pa.float32(), "ASR's probability of that language"),
        _field("asr_task", pa.string(), "transcribe or translate"),
        _field("asr_flags", pa.list_(pa.string()), "reasons to doubt the ASR text"),
        _field("asr_avg_logprob", pa.float32(), "mean token log-probability over segments"),
        _field("asr_no_speech_prob", pa.float32(), "highest no-speech probability of a segment"),
        _field("asr_compression_ratio", pa.float32(), "highest gzip compression ratio of a segment (repetition)"),
        _field("asr_segments", pa.list_(SEGMENT_STRUCT), "segments with times"),
        _field("asr_words", pa.list_(WORD_STRUCT), "words with times and probabilities"),
        _field("asr_english", pa.string(), "the ASR model's English translation where the speech is not English (speech.whisper_english)"),
    ],
)


def _nullable(field: pa.Field) -> pa.Field:
    """A stage-owned column as the shards hold it: null until that stage has run for the build."""
    return field.with_nullable(True)


# --- the dataset (OUT/shards/merr-*.parquet) ---------------------------------------------------

SHARD_SCHEMA = _schema(
    "shard",
    [
        _field("clip_id", pa.string(), "clip identifier, unique in a build", False),
        _field("source_path", pa.string(), "absolute path of the source clip (bytes that are not UTF-8 written \\xNN)", False),
        _field("source_path_bytes", pa.binary(), "the path's raw bytes where its name is not valid UTF-8; null otherwise"),
        _field("fingerprint", pa.string(), "sha256 of the source file's bytes", False),
        _field("duration_s", pa.float64(), "clip duration in seconds: of the video stream read", False),
        _field("fps", pa.float64(), "average video frame rate", False),
        _field("width", pa.int32(), "displayed width in pixels", False),
        _field("height", pa.int32(), "displayed height in pixels", False),
        _field("has_audio", pa.bool_(), "whether the clip has an audio stream", False),
        _field("video_stream", pa.int32(), "the video stream read: ffmpeg's v:N (ingest.video_stream chooses where there are several)"),
        _field("video_streams", pa.int32(), "how many video streams the file has (cover art included)"),
        *[_nullable(f) for f in FACE_FIELDS if f.name not in ("visual_expression_description",)],
        _field("frames_jpeg", pa.list_(pa.binary()), "K uniformly spaced frames as JPEG (temporal encoders)"),
        _field("frame_times_s", pa.list_(pa.float32()), "timestamp of each frame in frames_jpeg"),
        *[_nullable(f) for f in SPEECH_FIELDS],
        _field("transcript_en", pa.string(), "the transcript in English (what captions and prompts quote unless transcript_flags doubt it)"),
        _field("transcript_en_source", pa.string(), "original (already English), whisper:<asr backend> or llm:<model>"),
        _field("visual_expression_description", pa.string(), "AU phrases at the peak, MERR style"),
        _field("visual_objective_description", pa.string(), "what the scene shows (VLM or measured facts)"),
        _field("audio_tone_description", pa.string(), "tone phrases relative to the corpus"),
        _field("label", pa.string(), "the MERR label of the clip (one of the nine)"),
        _field("label_source", pa.string(), "label file, pseudo-label, or the rule that set the label"),
        _field("coarse_caption", pa.string(), "the paper's template sentence filled from the clues"),
        _field("subtitle_cut", pa.bool_(), "the quoted English words were longer than speech.subtitle.QUOTE_MAX_CHARS and are quoted cut, ending in ' [...]'"),
        _field("fine_caption", pa.string(), "LLM reasoning that passed the checks; null where not kept"),
        _field("fine_status", pa.string(), "'kept' or the reason the fine caption was rejected"),
        _field("split", pa.string(), "train, val or test (hash of clip_id; a duplicate takes the split of the clip it copies)", False),
        _field("duplicate_of", pa.string(), "the first clip id (in id order) whose file has the same bytes; null for a clip without a copy"),
        _field("provenance", pa.string(), "JSON: tool version, stage versions and config digests, models", False),
        # Filled by `merr encode` (null until then): the original's local, temporal and audio encoder inputs.
        _field("feat_face", pa.list_(pa.float32()), "image-encoder feature of the peak face crop, pooled (merr encode)"),
        _field("feat_video", pa.list_(pa.float32()), "video-encoder feature of the K frames, pooled (merr encode)"),
        _field("feat_audio", pa.list_(pa.float32()), "audio-encoder feature of the clip's audio, pooled (merr encode)"),
        _field("vision_patches", VISION_PATCHES_STRUCT, "the global vision tower's patch tokens of the peak frame, float16 (merr encode --vision-tower)"),
    ],
)

QUARANTINE_SCHEMA = _schema(
    "quarantine",
    [
        _field("clip_id", pa.string(), "clip identifier (file stem when it never got further)", False),
        _field("source_path", pa.string(), "path of the clip as found", False),
        _field("stage", pa.string(), "stage that rejected the clip", False),
        _field("error_kind", pa.string(), "machine-readable reason (merr_builder.quarantine.ErrorKind)", False),
        _field("message", pa.string(), "what went wrong, for a person", False),
    ],
)

TABLES: dict[str, pa.Schema] = {
    "shard": SHARD_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "stage.ingest": INGEST_SCHEMA,
    "stage.media": MEDIA_SCHEMA,
    "stage.faces": FACES_SCHEMA,
    "stage.speech": SPEECH_SCHEMA,
}


class SchemaError(ValueError):
    """A table that does not match its declared schema."""


def validate_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` cast to `schema`, or raise SchemaError naming the table and column."""
    name = (schema.metadata or {}).get(b"merr_table", b"?").decode()
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"table {name}: missing columns {missing}, unexpected columns {extra}")
    table = table.select(schema.names)
    for field in schema:
        column = table.column(field.name)
        if not field.nullable and column.null_count:
            raise SchemaError(f"table {name}: column {field.name} must not be null ({column.null_count} nulls)")
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"table {name}: {exc}") from exc


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build a validated table from row dicts (missing nullable keys become nulls). Text from the file
    system that is not valid UTF-8 (a file name, a message naming it) is stored as `names.path_text`
    writes it: Parquet holds UTF-8 only."""
    try:
        try:
            table = pa.Table.from_pylist(rows, schema=schema)
        except UnicodeEncodeError:
            table = pa.Table.from_pylist([{k: _as_utf8(v) for k, v in row.items()} for row in rows], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        name = (schema.metadata or {}).get(b"merr_table", b"?").decode()
        raise SchemaError(f"table {name}: {exc}") from exc
    return validate_table(table, schema)


def _as_utf8(value: object) -> object:
    if isinstance(value, str):
        return path_text(value)
    if isinstance(value, list):
        return [_as_utf8(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_utf8(v) for k, v in value.items()}
    return value


def render_markdown(name: str, schema: pa.Schema) -> str:
    lines = [
        f"# `{name}` (schema {SCHEMA_VERSION})",
        "",
        "Generated from `merr_builder/schema.py` by `python -m merr_builder.schema schemas/`; do not edit.",
        "",
        "| column | type | nullable | meaning |",
        "|---|---|---|---|",
    ]
    for field in schema:
        doc = (field.metadata or {}).get(b"doc", b"").decode()
        type_text = str(field.type).replace("|", "\\|")
        lines.append(f"| `{field.name}` | `{type_text}` | {'yes' if field.nullable else 'no'} | {doc} |")
    return "\n".join(lines) + "\n"


def render_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in TABLES.items():
        path = directory / f"{name}.md"
        path.write_text(render_markdown(name, schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in render_all(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(written_path)
