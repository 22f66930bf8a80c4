"""The data card and the gallery of a real build: numbers counted again from the shards, valid PNG plots,
and a gallery that a real headless Chromium opens with every image decoded."""

import json
import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from merr_builder.layout import CARD, GALLERY, PLOTS
from merr_builder.facs import AU_NAMES, AU_PRESENCE_THRESHOLD


def _table(card: str, heading: str, which: int = 0) -> list[list[str]]:
    """The rows of the `which`-th Markdown table under `## heading` (its header and rule left out)."""
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"((?:^\|.*\n)+)", section, flags=re.M)
    lines = tables[which].splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_card_counts_what_the_shards_hold(sample_build: Path):
    card = (sample_build / CARD).read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "shards/*.parquet" and "emotion-recognition" in header["tags"]
    shards = pd.read_parquet(sample_build / "shards")
    quarantine = pd.read_parquet(sample_build / "quarantine.parquet")
    manifest = json.loads((sample_build / "manifest.json").read_text())

    funnel = {step: int(n) for step, n in _table(card, "Funnel")}
    assert funnel["clips found"] == manifest["input"]["clips_found"] == len(shards) + len(quarantine)
    assert funnel["kept by the AU filter (rows in the shards)"] == len(shards)
    filtered = (quarantine.error_kind == "no_au_match").sum()
    assert funnel["through faces and speech"] == len(shards) + filtered
    assert (quarantine[quarantine.error_kind == "no_au_match"].stage == "au_filter").all()
    assert "The paper's AU filter is on" in card and "leaves out AU45" in card  # departures follow the settings
    assert "How often each action unit is present" in card
    presence = manifest["au_presence"]
    assert presence["frames"] > 100 and max(presence["present"].values()) <= 0.5  # calibrated: no AU almost everywhere
    assert funnel["coarse caption"] == shards.coarse_caption.notna().sum()
    assert funnel["fine caption kept"] == (shards.fine_status == "kept").sum()
    reasons = {(stage, kind): int(n) for stage, kind, n in _table(card, "Funnel", 1)}
    assert reasons == Counter(zip(quarantine.stage, quarantine.error_kind))

    labels = {label: (int(c), int(f)) for label, c, f in _table(card, "Labels")}
    coarse = shards[shards.coarse_caption.notna()].label.value_counts()
    fine = shards[shards.fine_status == "kept"].label.value_counts()
    assert labels == {label: (int(coarse.get(label, 0)), int(fine.get(label, 0))) for label in set(coarse.index) | set(fine.index)}

    for label, n, top in _table(card, "Top action units per label"):
        peaks = shards[shards.label == label].aus_peak.dropna()
        assert int(n) == len(peaks)
        present = Counter(au for aus in peaks for au in AU_NAMES if aus[au] >= AU_PRESENCE_THRESHOLD)
        named = re.findall(r"(AU\d\d) \((\d+)%\)", top)
        assert [au for au, _ in named] == [au for au, _ in present.most_common(5)]
        assert all(int(share) == round(100 * present[au] / len(peaks)) for au, share in named)
    for name, info in manifest["models"].items():  # every model with its hash
        assert f"| {name} |" in card and (info["sha256"] or "—") in card
    assert "## Known departures from the original recipe" in card


def test_the_plots_are_valid_pngs(sample_build: Path):
    for name in ("labels.png", "durations.png"):
        data = (sample_build / PLOTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        chunks, offset = [], 8
        while offset < len(data):  # walk every chunk and check its CRC
            length = int.from_bytes(data[offset : offset + 4], "big")
            kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
            assert int.from_bytes(data[offset + 8 + length : offset + 12 + length], "big") == zlib.crc32(kind + body)
            chunks.append(kind)
            offset += 12 + length
        assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 400 and height >= 200


def test_merr_card_writes_them_again(sample_build: Path, tmp_path: Path):
    copy = tmp_path / "build"
    shutil.copytree(sample_build, copy, symlinks=True)
    (copy / CARD).unlink()
    (copy / GALLERY).unlink()
    result = subprocess.run([sys.executable, "-m", "merr_builder.cli", "card", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (copy / CARD).read_text() == (sample_build / CARD).read_text()
    assert (copy / GALLERY).read_text() == (sample_build / GALLERY).read_text()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


def test_the_gallery_opens_in_headless_chromium_with_its_images(sample_build: Path, tmp_path: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
    page = (sample_build / GALLERY).resolve().as_uri()
    html = (sample_build / GALLERY).read_text()
    assert "http://" not in html.replace('"http://www.w3.org', "") and "https://" not in html  # self-contained
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    shown = pd.read_parquet(sample_build / "shards", columns=["clip_id", "peak_frame_jpeg", "peak_face_jpeg"])
    expected_images = int(shown.peak_frame_jpeg.notna().sum() + shown.peak_face_jpeg.notna().sum())  # every clip fits the sample
    assert f'data-images="{expected_images}"' in body and f'data-images-loaded="{expected_images}"' in body
    for clip_id in shown.clip_id:
        assert f'data-clip="{clip_id}"' in dom
    quarantined = pd.read_parquet(sample_build / "quarantine.parquet")
    assert f"Quarantined clips ({len(quarantined)})" in dom
    for clip_id in quarantined[quarantined.error_kind == "no_au_match"].clip_id:  # the AU filter's drops, findable
        assert clip_id in dom

    shot = tmp_path / "gallery.png"
    subprocess.run([chromium, *flags, "--window-size=1400,1600", f"--screenshot={shot}", page], capture_output=True, timeout=120)
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1400)
    # The peak frames show as photographs: many distinct colours, unlike the page's white and grey.
    colours = len({tuple(p) for p in image[::4, ::4].reshape(-1, 3)})
    assert colours > 2000
