"""The data card (`OUT/DATA_CARD.md`, plots in `OUT/card/`) and the sample gallery (`OUT/gallery.html`).

Both are made from what the build wrote — shards, quarantine table, manifest — by every build, by
`merr annotate`, and again by `merr card OUT`. Templates live in `data_cards/` (Jinja2). Every number
in the card is counted from the shards here, never carried over from the run.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from merr_builder.atomic import write_bytes_atomic
from merr_builder.facs import AU_NAMES, AU_PRESENCE_THRESHOLD
from merr_builder.labels import MERR_LABELS
from merr_builder.layout import BuildLayout
from merr_builder.ingest import IngestStage
from merr_builder.media import MediaStage
from merr_builder.shards import read_build_rows
from merr_builder.speech import subtitle

TEMPLATES = Path(__file__).resolve().parents[1] / "data_cards"
PER_LABEL = 6  # clips shown per label in the gallery
CARD_COLUMNS = ["clip_id", "label", "label_source", "n_faces", "coarse_caption", "fine_caption", "fine_status",
                "duration_s", "aus_peak", "transcript_language", "split", "au_series", "label_agreement",
                "classifier_label", "pseudo_label", *subtitle.COLUMNS, "transcript_en_source"]  # fmt: skip
GALLERY_COLUMNS = CARD_COLUMNS + ["peak_frame_jpeg", "peak_face_jpeg", "audio_tone_description"]
DEPARTURES = (
    "Faces in wide shots are found with MediaPipe's full-range detector, tracked, and the main person chosen by presence, "
    "size and mouth movement during speech; the original took one face per clip.",
    "The audio tone description comes from eGeMAPS functionals, speech rate and pauses, phrased relative to this build's "
    "own statistics; the authors used Qwen-Audio.",
    "Transcripts come from a sidecar when given (MER2023's `transcription_en_all.csv`), else from Whisper base "
    "(faster-whisper); the English that captions quote is `transcript_en` (see Subtitles).",
    "The fine-grained reasoning is written by the configured LLM backend (see Models); the paper used LLaMA-3-8B-Instruct.",
    "The peak frame is kept for the global visual encoder (and exported as `peak_frames/`); the released trainer reads the "
    "clip's first frame instead.",
    "Labels that the AU evidence contradicts are kept in the coarse set but not sent to the fine step (`fine_status` says "
    "so); neutral clips are topped up in the fine set, as the paper did.",
)


def settings_departures(config: dict) -> list[str]:
    """The departures this build's own settings make (faces and annotate sections of the manifest's config)."""
    faces, annotate = config.get("faces", {}), config.get("annotate", {})
    out = []
    if faces.get("backend", "litert") == "openface":
        out.append("Facial action units were imported from OpenFace CSVs, as the authors measured them.")
    else:
        out.append(
            "Facial action units come from the 52 blendshapes of MediaPipe's face models mapped onto FACS AUs, with the "
            "population's resting face removed and each AU's scale set from py-feat's AU→FaceMesh model chained with "
            "MediaPipe's blendshape model (`merr_builder/facs.py` says how, AU by AU); the authors used OpenFace."
        )
        if faces.get("baseline_percentile", 0) > 0:
            out.append(
                f"Each face's AUs are read above its own resting face: the {faces['baseline_percentile']:g}th percentile of "
                f"each AU over the clip (at most {faces.get('baseline_max', 0):g} above the population's), as OpenFace "
                "corrects each person; the baseline used is in `au_baseline`."
            )
    excluded = list(faces.get("exclude_aus") or [])
    if excluded:
        out.append(f"The peak score leaves out {', '.join(excluded)} (a blink is not an expression); the authors summed every AU.")
    if faces.get("peak_hold_s", 0) > 0:
        out.append(f"A frame's peak score is the AU sum it holds over {faces['peak_hold_s']:g} s, so a one-frame landmark "
                   "spike cannot be the peak; the authors took the single highest frame.")
    out.append("The AU prototypes of worried and doubt are ours (MERR publishes none); every prototype names core AUs that "
               "must be present and contradicting AUs that rule it out (`EMOTION_PROTOTYPES` in `merr_builder/facs.py`).")
    if annotate.get("au_filter", True):
        out.append("The paper's AU filter is on: unlabelled clips whose peak matches no prototype left the build "
                   "(`no_au_match` in the quarantine table).")
    else:
        out.append("The paper's AU filter is off: unlabelled clips whose peak matches no prototype are kept as neutral, "
                   "which the original coarse set never had.")
    if annotate.get("require_label_agreement"):
        out.append("Pseudo-labelled clips were kept only where the facex expression classifier agreed (`label_disagreement`).")
    return out


def objective_backend(manifest: dict) -> str:
    """How the build described its peak frames (builds from before the VLM step: measured)."""
    return manifest.get("annotation", {}).get("visual_objective", {}).get("backend", "measured")


def write_card(out_dir: Path) -> tuple[Path, Path]:
    """Write DATA_CARD.md (+ plots) and gallery.html for the build in `out_dir`; returns their paths."""
    layout = BuildLayout(out_dir)
    manifest = layout.read_manifest()
    rows = read_build_rows(layout.root, CARD_COLUMNS)
    quarantine = pq.read_table(layout.quarantine).to_pylist() if layout.quarantine.exists() else []
    layout.plots.mkdir(exist_ok=True)
    _plot_labels(rows, layout.plots / "labels.png")
    _plot_durations(rows, layout.plots / "durations.png")
    card = _environment().get_template("DATA_CARD.md.j2").render(**card_facts(manifest, rows, quarantine))
    write_bytes_atomic(layout.card, card.encode())
    write_bytes_atomic(layout.gallery, render_gallery(layout.root, manifest, quarantine).encode())
    return layout.card, layout.gallery


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                       keep_trailing_newline=True)  # fmt: skip


def label_counts(rows: list[dict]) -> list[tuple[str, int, int]]:
    """(label, rows with a coarse caption, rows with a kept fine caption), in the paper's label order."""
    coarse = Counter(r["label"] for r in rows if r["label"] and r["coarse_caption"])
    fine = Counter(r["label"] for r in rows if r["label"] and r["fine_status"] == "kept")
    return [(label, coarse[label], fine[label]) for label in MERR_LABELS if coarse[label] or fine[label]]


def funnel(manifest: dict, rows: list[dict], quarantine: list[dict]) -> list[tuple[str, int]]:
    lost = Counter(q["stage"] for q in quarantine)
    found = manifest["input"]["clips_found"]
    probed = found - lost[IngestStage.name]
    decoded = probed - lost[MediaStage.name]
    measured = decoded - lost["faces"] - lost["speech"]
    return [
        ("clips found", found),
        ("probed (ffprobe, fingerprint, sidecars)", probed),
        ("decoded (audio and frames)", decoded),
        ("through faces and speech", measured),
        ("kept by the AU filter (rows in the shards)", len(rows)),
        ("with a face", sum(1 for r in rows if (r["n_faces"] or 0) > 0)),
        ("labelled", sum(1 for r in rows if r["label"])),
        ("coarse caption", sum(1 for r in rows if r["label"] and r["coarse_caption"])),
        ("fine caption kept", sum(1 for r in rows if r["fine_status"] == "kept")),
    ]


def au_presence(rows: list[dict]) -> tuple[int, list[tuple[str, float]]]:
    """(analysed frames with the main face, per AU the share of them where it is present) over these rows."""
    frames = [f for r in rows for f in (r.get("au_series") or []) if f.get(AU_NAMES[0]) is not None]
    return len(frames), [(au, sum(1 for f in frames if f[au] >= AU_PRESENCE_THRESHOLD) / len(frames) if frames else 0.0)
                         for au in AU_NAMES]  # fmt: skip


def _au_presence(manifest: dict, rows: list[dict]) -> tuple[int, list[tuple[str, float]]]:
    """Over every analysed frame, as publishing counted it; builds from before that: the shards' rows."""
    found = manifest.get("au_presence")
    if found:
        return found["frames"], [(au, found["present"].get(au, 0.0)) for au in AU_NAMES]
    return au_presence(rows)


def classifier_agreement(rows: list[dict]) -> tuple[int, int]:
    """(pseudo-labelled rows the classifier saw, of them those where it named the same label)."""
    judged = [r for r in rows if r.get("label_agreement") is not None]
    return len(judged), sum(1 for r in judged if r["label_agreement"])


def top_aus(rows: list[dict], k: int = 5) -> list[tuple[str, int, str]]:
    out = []
    for label in MERR_LABELS:
        faces = [r["aus_peak"] for r in rows if r["label"] == label and r["aus_peak"]]
        if not faces:
            continue
        present = Counter(au for aus in faces for au in AU_NAMES if (aus.get(au) or 0) >= AU_PRESENCE_THRESHOLD)
        top = ", ".join(f"{au} ({n / len(faces):.0%})" for au, n in present.most_common(k)) or "none present"
        out.append((label, len(faces), top))
    return out


OBJECTIVE_DEPARTURE = {
    "measured": "The visual objective description is a factual sentence built from what the build measured (people, face "
    "size and position, head pose); the authors asked MiniGPT-v2 about the peak frame.",
    "openai": "The visual objective description comes from the vision-language model named under Models, shown the peak "
    "frame with our prompt (the authors' MiniGPT-v2 prompt was not published); where its answer was unusable, the row "
    "keeps the measured-facts sentence and its `provenance` says why.",
}


def subtitles(rows: list[dict]) -> dict:
    """What the build's captions quote: English by source, doubtful transcripts by flag, clips without speech."""
    doubtful = [r for r in rows if subtitle.speaks(r) and subtitle.doubtful(r)]
    return {
        "english": Counter((r["transcript_en_source"] or "").split(":")[0] for r in rows if subtitle.quotable(r)).most_common(),
        "doubtful": len(doubtful),
        "flags": Counter(f for r in doubtful for f in r["transcript_flags"] if f in subtitle.DOUBTFUL_FLAGS).most_common(),
        "untranslated": sum(1 for r in rows if subtitle.speaks(r) and not subtitle.doubtful(r) and not subtitle.quotable(r)),
        "silent": sum(1 for r in rows if not subtitle.speaks(r)),
    }


def dataset_languages(rows: list[dict]) -> list[str]:
    """English (every caption), and the languages of the transcripts no flag doubts: a language that only a
    doubtful transcript has (Whisper's guess of Korean for a Mandarin clip) is not one of the dataset's."""
    spoken = {r["transcript_language"] for r in rows if r["transcript_language"] and subtitle.speaks(r) and not subtitle.doubtful(r)}
    return sorted(spoken | ({"en"} if rows else set()))


def card_facts(manifest: dict, rows: list[dict], quarantine: list[dict]) -> dict:
    durations = sorted(r["duration_s"] for r in rows)
    languages = dataset_languages(rows)
    n = len(rows)
    stage_rank = {s: i for i, s in enumerate(manifest.get("stages", {}))}  # (the manifest lists the units in pipeline order)
    by_stage = Counter((q["stage"], q["error_kind"]) for q in quarantine)
    annotation = manifest.get("annotation") or {"coarse_template": "?", "fine": {"prompt": "?", "backend": "?"}, "settings": {}}
    tools = {name: (version or "").split(" Copyright")[0] or None for name, version in manifest.get("tools", {}).items()}
    packages = {**manifest.get("packages", {}), **tools}
    return {
        "pretty_name": f"MERR build of {Path(manifest['input']['path']).name}",
        "manifest": manifest,
        "languages": languages,
        "size_category": "n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "n>100K",
        "funnel": funnel(manifest, rows, quarantine),
        "quarantine_by_stage": sorted(by_stage.items(), key=lambda item: (stage_rank.get(item[0][0], 99), item[0][1])),
        "label_counts": label_counts(rows),
        "label_sources": Counter(_source_kind(r["label_source"]) for r in rows if r["label"]).most_common(),
        "duration_summary": (f"{n} clips, {durations[0]:.1f}–{durations[-1]:.1f} s, median {durations[n // 2]:.1f} s, "
                             f"{sum(durations) / 60:.1f} min in all") if n else "no clips",  # fmt: skip
        "au_threshold": AU_PRESENCE_THRESHOLD,
        "top_aus": top_aus(rows),
        "fine_statuses": Counter(_status_kind(r["fine_status"]) for r in rows).most_common(),
        "models": sorted(manifest.get("models", {}).items()),
        "annotation": annotation,
        "annotation_settings": ", ".join(f"{k} {v}" for k, v in annotation.get("settings", {}).items()) or "—",
        "packages": sorted(packages.items()),
        "departures": (OBJECTIVE_DEPARTURE[objective_backend(manifest)], *settings_departures(manifest.get("config", {})), *DEPARTURES),
        "au_presence": _au_presence(manifest, rows),
        "subtitles": subtitles(rows),
        "translation": (manifest.get("annotation") or {}).get("translation", {"backend": "none"}),
        "fine_answers": (manifest.get("annotation") or {}).get("fine_answers") or {},
        "default_llm": (manifest.get("annotation") or {}).get("fine", {}).get("backend") == "smollm2",
        "classifier_agreement": classifier_agreement(rows),
    }


def _source_kind(source: str | None) -> str:
    """A label source without its file path, so sources count together (e.g. 'label file')."""
    return (source or "none").split(" (")[0].split(":")[0]


def _status_kind(status: str | None) -> str:
    """A fine status without its clip-specific tail (near-duplicate of WHICH clip, etc.)."""
    return (status or "none").split(" of ")[0].split(" (")[0]


def _plot_labels(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = label_counts(rows)
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    labels = [c[0] for c in counts] or ["(none)"]
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [c[1] for c in counts] or [0], width=0.4, label="coarse")
    ax.bar([x + 0.2 for x in xs], [c[2] for c in counts] or [0], width=0.4, label="fine kept")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("clips")
    ax.set_title("Clips per label")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _plot_durations(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    ax.hist([r["duration_s"] for r in rows] or [0], bins=20, color="#4a7")
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("clips")
    ax.set_title("Clip durations")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def _data_uri(jpeg: bytes | None) -> str | None:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode() if jpeg else None


def _au_bars(aus: dict | None) -> list[dict]:
    if not aus:
        return []
    return [
        {"au": au, "value": value, "x": 4 + i * 22, "h": round(60 * min(value, 5.0) / 5.0, 1), "present": value >= AU_PRESENCE_THRESHOLD}
        for i, au in enumerate(AU_NAMES)
        if (value := aus.get(au)) is not None
    ]


def _sample_key(clip_id: str) -> str:
    return hashlib.sha256(clip_id.encode()).hexdigest()


def render_gallery(out_dir: Path, manifest: dict, quarantine: list[dict]) -> str:
    """One self-contained page: images inline as data URIs, AU charts as inline SVG, no scripts fetched."""
    light = read_build_rows(out_dir, ["clip_id", "label"])
    groups: dict[str, list[str]] = {}
    for row in light:
        groups.setdefault(row["label"] or "unlabelled", []).append(row["clip_id"])
    chosen = {c for ids in groups.values() for c in sorted(ids, key=_sample_key)[:PER_LABEL]}
    detail = {}
    if chosen:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        table = ds.dataset([str(p) for p in BuildLayout(out_dir).shard_files()]).to_table(columns=GALLERY_COLUMNS, filter=pc.field("clip_id").isin(sorted(chosen)))
        for row in table.to_pylist():
            row["frame_src"], row["face_src"] = _data_uri(row.pop("peak_frame_jpeg")), _data_uri(row.pop("peak_face_jpeg"))
            row["au_bars"] = _au_bars(row["aus_peak"])
            row["says"] = subtitle.spoken_sentence(row)
            detail[row["clip_id"]] = row
    order = [label for label in (*MERR_LABELS, "unlabelled") if label in groups]
    return _environment().get_template("gallery.html.j2").render(
        title=f"MERR build of {Path(manifest['input']['path']).name}",
        rows=len(light),
        quarantined=len(quarantine),
        per_label=PER_LABEL,
        created_at=manifest.get("created_at", ""),
        groups=[(label, [detail[c] for c in sorted(groups[label], key=_sample_key)[:PER_LABEL]]) for label in order],
        totals={label: len(ids) for label, ids in groups.items()},
        quarantine=quarantine,
    )
