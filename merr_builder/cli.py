"""The `merr` command line.

Exit codes: 0 the build finished with rows; 1 no clip succeeded; 2 the config or the input is invalid
(nothing was processed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from merr_builder.config import ConfigError, load_config
from merr_builder.env import apply_offline_defaults
from merr_builder.ingest import InputError

app = typer.Typer(
    help="Build the MERR multimodal emotion dataset from raw video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # a message is one line, however long

EXIT_NO_ROWS = 1
EXIT_BAD_INPUT = 2


@app.callback()
def _main() -> None:
    apply_offline_defaults()


def _flag_overrides(**flags: object) -> list[str]:
    """Flags are shorthands for `--set section.field=value`; None means 'not given'."""
    return [f"{key}={'' if value is None else value}" for key, value in flags.items() if value is not None]


def _summary_table(summary) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=f"merr build → {summary.out_dir}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("clips found", str(summary.clips_found))
    table.add_row("rows written", str(summary.rows))
    table.add_row("shards", str(len(summary.shards)))
    table.add_row("quarantined", str(summary.quarantined))
    for kind, count in sorted(summary.quarantined_by_kind.items()):
        table.add_row(f"  {kind}", str(count))
    for stage, seconds in summary.stage_seconds.items():
        skipped = summary.stage_skipped.get(stage, 0)
        note = f" ({skipped} skipped: output current)" if skipped else ""
        table.add_row(f"time in {stage}", f"{seconds:.1f} s{note}")
    return table


@app.command()
def build(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="folder of clips, manifest CSV, or MER2023 folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (shards, manifest, quarantine)")],
    config_file: Annotated[Path | None, typer.Option("--config", "-c", help="YAML or TOML config file")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="override a config field: section.field=value (repeatable)")
    ] = None,
    layout: Annotated[str | None, typer.Option(help="auto | folder | manifest | mer2023")] = None,
    labels: Annotated[Path | None, typer.Option(help="label CSV (name,label)")] = None,
    transcripts: Annotated[Path | None, typer.Option(help="transcript CSV (name,sentence)")] = None,
    sample_fps: Annotated[float | None, typer.Option(help="frames per second analysed")] = None,
    every_frame: Annotated[bool | None, typer.Option("--every-frame", help="analyse every frame")] = None,
    k_frames: Annotated[int | None, typer.Option(help="uniform frames kept per clip")] = None,
    language: Annotated[str | None, typer.Option(help="force the speech language (ISO 639-1, e.g. zh)")] = None,
    translate: Annotated[bool | None, typer.Option("--translate", help="English transcripts from ASR")] = None,
    partition_size: Annotated[int | None, typer.Option(help="clips per partition")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel partition tasks")] = None,
    dask_address: Annotated[str | None, typer.Option(help="run on this Dask scheduler")] = None,
) -> None:
    """Build MERR shards from raw clips: ingest → media → faces → speech → shards, manifest, quarantine."""
    try:
        config = load_config(
            config_file,
            _flag_overrides(
                **{
                    "ingest.layout": layout,
                    "ingest.labels_file": labels,
                    "ingest.transcripts_file": transcripts,
                    "faces.sample_fps": sample_fps,
                    "faces.every_frame": every_frame,
                    "media.k_frames": k_frames,
                    "speech.language": language,
                    "speech.translate": translate,
                    "run.partition_size": partition_size,
                    "run.max_workers": workers,
                    "run.dask_address": dask_address,
                }
            )
            + list(overrides or []),
        )
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None

    from flows.build import run_build  # Prefect loads only once the config is known to be good
    from merr_builder.lock import BuildLockedError

    try:
        summary = run_build(input_path, out, config, console)
    except InputError as exc:
        console.print(f"[red]input error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except BuildLockedError as exc:
        console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(_summary_table(summary))
    if summary.rows == 0:
        console.print(f"[red]no clip succeeded[/red]; see {out / 'quarantine.parquet'}")
        raise typer.Exit(EXIT_NO_ROWS)
    console.print(f"done: {summary.rows} rows in {out / 'shards'}, manifest {out / 'manifest.json'}")


@app.command()
def annotate(
    from_: Annotated[Path, typer.Option("--from", help="a finished build folder (its stage outputs are reused)")],
    llm: Annotated[
        str | None,
        typer.Option(help="smollm2 | none | PATH of a local Hugging Face causal LM folder | URL of an OpenAI-compatible server"),
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="the model name, when --llm is a server URL")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="override an annotate or translate setting: annotate.field=value")
    ] = None,
) -> None:
    """Run the pipeline again from the stored stage outputs with other annotate.* settings (no decoding, no face
    or speech model): only the steps whose settings changed, and the ones after them, run."""
    from flows.build import rerun_build
    from merr_builder.rerun import RerunError

    choice = []
    if llm in ("smollm2", "none"):
        choice = [f"annotate.fine_backend={llm}"]
    elif llm is not None and llm.startswith(("http://", "https://")):
        choice = ["annotate.fine_backend=openai", f"annotate.server_url={llm}"] + ([f"annotate.server_model={llm_model}"] if llm_model else [])
    elif llm is not None:
        choice = ["annotate.fine_backend=transformers", f"annotate.model_dir={llm}"]
    from merr_builder.lock import BuildLockedError

    try:
        summary = rerun_build(from_, choice + list(overrides or []), ("annotate", "translate"), "merr annotate", console)
    except (ConfigError, RerunError, BuildLockedError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(_summary_table(summary))
    console.print(f"annotations regenerated: {summary.rows} rows in {from_ / 'shards'}")


export_app = typer.Typer(help="Write a finished build in another trainer's layout.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("emotion-llama")
def export_emotion_llama_command(
    out: Annotated[Path, typer.Argument(help="a finished build folder")],
    to: Annotated[Path, typer.Option(help="folder to write: new, empty, or an earlier export (replaced); never inside the build or its input")],
    drop_missing: Annotated[bool, typer.Option(help="leave out clips that lack an encoder feature (else: refused, clips named)")] = False,
    copy_videos: Annotated[bool, typer.Option(help="copy the clips into video/ (default: relative links)")] = False,
) -> None:
    """The files the original Emotion-LLaMA trainer reads: MERR_*_grained.txt/.json, transcripts, videos, features."""
    from merr_builder.export.emotion_llama import export_emotion_llama
    from merr_builder.finished_build import ExportError

    try:
        result = export_emotion_llama(out, to, drop_missing, copy_videos)
    except ExportError as exc:
        console.print(f"[red]export error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"wrote {result.folder}: {result.coarse} coarse and {result.fine} fine clips ({result.unlabelled} without a label left out)")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


@export_app.command("sharegpt")
def export_sharegpt_command(
    out: Annotated[Path, typer.Argument(help="a finished build folder")],
    to: Annotated[Path, typer.Option(help="the JSON file to write; media go beside it, dataset_info.json too")],
    tasks: Annotated[str, typer.Option(help="comma-separated: emotion, reason, reason_v2")] = "emotion,reason,reason_v2",
    name: Annotated[str, typer.Option(help="the dataset's name in dataset_info.json")] = "merr",
    seed: Annotated[int, typer.Option(help="seed of the instruction choice")] = 0,
    modalities: Annotated[str, typer.Option(help="comma-separated: image (peak frame), video (the clip), audio (16 kHz WAV)")] = "image,video,audio",
    copy_videos: Annotated[bool, typer.Option(help="copy the clips (default: relative links)")] = False,
) -> None:
    """Conversation samples for LLaMA-Factory (ShareGPT format with images, videos and audios)."""
    from merr_builder.export.sharegpt import export_sharegpt
    from merr_builder.finished_build import ExportError

    split = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())
    try:
        result = export_sharegpt(out, to, split(tasks), seed, name, split(modalities), copy_videos)
    except ExportError as exc:
        console.print(f"[red]export error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    per_task = ", ".join(f"{task} {n}" for task, n in result.by_task.items())
    console.print(f"wrote {result.file}: {result.samples} samples from {result.clips} clips ({per_task}); registered as '{name}'")


@export_app.command("hf")
def export_hf_command(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint folder, or a run folder (its latest checkpoint)")],
    to: Annotated[Path, typer.Option(help="folder to write: new, empty, or an earlier export (replaced)")],
    dtype: Annotated[str, typer.Option(help="weights dtype: float32, bfloat16 or float16")] = "float32",
) -> None:
    """A trained checkpoint as a Hugging Face model folder (LoRA merged) plus projectors.safetensors and emotion_llama.json."""
    from merr_builder.finished_build import ExportError
    from merr_builder.trainer.hf_export import export_hf

    if dtype not in ("float32", "bfloat16", "float16"):
        console.print(f"[red]error:[/red] dtype {dtype!r}: choose float32, bfloat16 or float16")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        result = export_hf(checkpoint, to, dtype)
    except (ValueError, FileNotFoundError, ExportError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"wrote {result.folder}: {result.parameters / 1e6:.1f} M parameters (LoRA merged), projectors for {', '.join(result.streams)}")


@app.command()
def card(out: Annotated[Path, typer.Argument(help="a finished build folder")]) -> None:
    """Write the data card (DATA_CARD.md, plots) and the sample gallery (gallery.html) of a build again."""
    from merr_builder.card import write_card
    from merr_builder.layout import BuildLayout

    if not BuildLayout(out).is_build():
        console.print(f"[red]error:[/red] {out} is not a finished build (no manifest.json)")
        raise typer.Exit(EXIT_BAD_INPUT)
    card_path, gallery_path = write_card(out)
    console.print(f"wrote {card_path} and {gallery_path}")


@app.command()
def encode(
    out: Annotated[Path, typer.Argument(help="a finished build folder (its shards are rewritten with the features)")],
    image_encoder: Annotated[Path | None, typer.Option(help="local image model (ViT, CLIP, MAE, …) for the face over the clip → feat_face")] = None,
    video_encoder: Annotated[Path | None, typer.Option(help="local VideoMAE model for the K frames → feat_video")] = None,
    audio_encoder: Annotated[Path | None, typer.Option(help="local HuBERT / wav2vec 2.0 model for the audio → feat_audio")] = None,
    vision_tower: Annotated[Path | None, typer.Option(help="local vision model (CLIP, SigLIP, ViT): the peak frame's patch tokens → vision_patches")] = None,
    batch_size: int = 16,
) -> None:
    """Pooled features from real encoders (local checkpoints), for the trainer and the Emotion-LLaMA export: the
    pipeline run again from the stored stage outputs with these encode.* settings (the encoders step and
    publishing run; annotations are kept as they are)."""
    from flows.build import rerun_build
    from merr_builder.lock import BuildLockedError
    from merr_builder.rerun import RerunError
    from merr_builder.shards import read_build_rows

    if not (image_encoder or video_encoder or audio_encoder or vision_tower):
        console.print("[red]error:[/red] name at least one encoder (--image-encoder, --video-encoder, --audio-encoder, --vision-tower)")
        raise typer.Exit(EXIT_BAD_INPUT)
    settings = _flag_overrides(**{"encode.image_encoder": image_encoder, "encode.video_encoder": video_encoder,
                                  "encode.audio_encoder": audio_encoder, "encode.vision_tower": vision_tower,
                                  "encode.batch_size": batch_size})  # fmt: skip
    try:
        summary = rerun_build(out, settings, ("encode",), "merr encode", console)
    except (ConfigError, RerunError, BuildLockedError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    features = ["feat_face", "feat_video", "feat_audio", "vision_patches"]
    rows = read_build_rows(out, ["clip_id", *features])
    filled = ", ".join(f"{column} {sum(r[column] is not None for r in rows)}" for column in features)
    console.print(f"encoded {summary.rows} rows ({filled} filled) in {out}")


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="a training config (configs/train_stage1.yaml, configs/train_stage2.yaml)")],
    resume: Annotated[bool, typer.Option(help="continue exactly from the run folder's latest checkpoint")] = False,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override a training field: field=value")] = None,
) -> None:
    """Train Emotion-LLaMA on build shards (for several processes: torchrun -m merr_builder.trainer.train)."""
    from merr_builder.trainer.config import load_train_config
    from merr_builder.trainer.train import train as run_training

    try:
        settings = load_train_config(config, list(overrides or []))
    except (ConfigError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    result = run_training(settings, resume=resume)
    console.print(f"trained to step {result.steps}; checkpoint {result.checkpoint}; metrics in {settings.out_dir / 'metrics.jsonl'}")


@app.command("eval")
def evaluate_command(
    out: Annotated[Path, typer.Option(help="folder for metrics.json, predictions.jsonl, confusion.png")],
    checkpoint: Annotated[Path | None, typer.Argument(help="a checkpoint folder, or a run folder (its latest checkpoint)")] = None,
    data: Annotated[list[Path] | None, typer.Option(help="build folder(s) to evaluate on")] = None,
    split: Annotated[str, typer.Option(help="train, val, test, or all")] = "test",
    protocol: Annotated[str, typer.Option(help="merr (nine labels, UAR/WAR) or emotion-llama (eval_emotion.py exactly)")] = "merr",
    predictions: Annotated[Path | None, typer.Option(help="score this predictions.jsonl again instead of generating")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="default: the protocol's (merr 16, emotion-llama 500)")] = None,
    batch_size: int = 8,
) -> None:
    """The `emotion` answer of every labelled clip, scored under a protocol (README: Evaluation protocols)."""
    from merr_builder.trainer.evaluate import evaluate, protocol_named, read_predictions, score

    try:
        chosen = protocol_named(protocol)
        if predictions is not None:
            result = score(read_predictions(predictions), out, protocol, {"predictions": str(predictions)})
        elif checkpoint is None or not data:
            raise ValueError("name a checkpoint and --data, or --predictions FILE")
        else:
            result = evaluate(checkpoint, list(data), out, None if split == "all" else split, batch_size, protocol, max_new_tokens)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    numbers = ", ".join(f"{name.replace('_', ' ')} {result[name]:.4f}" for name in chosen.headline)
    console.print(f"{result['samples']} clips, {chosen.name} protocol: {numbers}; written to {out}")


@app.command()
def infer(
    clip: Annotated[Path, typer.Argument(help="a video clip")],
    checkpoint: Annotated[Path, typer.Option(help="a checkpoint folder, or a run folder (its latest checkpoint)")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="a build setting for the clip, e.g. speech.language=zh")] = None,
) -> None:
    """Run the whole chain on one new clip (build it, then ask the model) and print the label and the reasoning."""
    from merr_builder.trainer.evaluate import infer as run_inference

    if not clip.is_file():
        console.print(f"[red]error:[/red] {clip}: no such file")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        answer = run_inference(clip, checkpoint, list(overrides or []))
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    print(f"label: {answer['label']}")
    print(f"reasoning: {answer['reasoning']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
