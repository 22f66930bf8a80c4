"""Session fixtures: the shared sample data, the generated speech and broken clips, one Prefect server."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from merr_builder.env import apply_offline_defaults

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MERR_SHARED_DATA", REPO.parent / "shared" / "data"))

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_clips  # noqa: E402

apply_offline_defaults()

# Prefect reads its settings when first imported (test modules import the flows at collection), so the
# shared server's address is fixed here, before any test module loads; the fixture below starts it.
from flows.server import PrefectServer  # noqa: E402

_SERVER = PrefectServer(Path(tempfile.mkdtemp(prefix="merr-prefect-")))
os.environ.update(_SERVER.env())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data not found at {SHARED_DATA}; set MERR_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mer2023_sample(shared_data: Path) -> Path:
    return shared_data / "mer2023_sample"


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> make_clips.Fixtures:
    return make_clips.make_all(tmp_path_factory.mktemp("clips"), shared_data)


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """One Prefect server for the whole session, stopped with its process group at the end.

    Its address is inherited by every `merr` subprocess a test starts, so no flow starts a temporary
    server of its own (those outlive a killed parent).
    """
    _SERVER.start()
    yield _SERVER
    _SERVER.stop()
    shutil.rmtree(_SERVER.home, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory: pytest.TempPathFactory, mer2023_sample: Path, clips: make_clips.Fixtures, shared_data: Path) -> Path:
    """A finished build with the offline LLM, in the MER2023 layout: the four MER2023 clips (their English
    transcript CSV), a generated Mandarin speech clip, a real face clip without speech and one broken
    file; shared by the export and data-card tests, which only read it."""
    from flows.build import run_build
    from merr_builder.config import load_config

    root = tmp_path_factory.mktemp("sample-build")
    video = root / "input" / "video"
    video.mkdir(parents=True)
    for clip in [*sorted((mer2023_sample / "video").glob("*.mp4")), clips.speech["speech_zh_sad"],
                 shared_data / "WolfgangLanger_Pexels.mp4", clips.text_as_mp4]:  # fmt: skip
        os.symlink(clip, video / clip.name)
    shutil.copy(mer2023_sample / "transcription_en_all.csv", root / "input")
    run_build(root / "input", root / "out", load_config(None, []))
    return root / "out"


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with SmolLM2's tokenizer, saved and then loaded through the trainer's own code:
    fast enough for the resume, save/load and DDP tests on two CPU cores."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from merr_builder.assets import smollm2_dir

    folder = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random-config encoders (ViT, VideoMAE, HuBERT) saved as local checkpoints, for `merr encode`."""
    import torch
    from transformers import (
        HubertConfig,
        HubertModel,
        VideoMAEConfig,
        VideoMAEImageProcessor,
        VideoMAEModel,
        ViTConfig,
        ViTImageProcessor,  # fmt: skip
        ViTModel,
        Wav2Vec2FeatureExtractor,
    )

    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
    ViTModel(ViTConfig(image_size=32, patch_size=16, **small)).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, **small)).save_pretrained(root / "videomae")
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "videomae")
    HubertModel(HubertConfig(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                             num_conv_pos_embedding_groups=2, **small)).save_pretrained(root / "hubert")  # fmt: skip
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(root / "hubert")
    return root


@pytest.fixture(scope="session")
def tiny_tower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP vision tower (40 px, 8 px patches: 25 patch tokens, so 7 after the 4-to-1 merge
    with zero padding), saved with its image processor as a local checkpoint, for the global stream."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("tiny-tower")
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=40,
                                     patch_size=8)).save_pretrained(folder)  # fmt: skip
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 40, "width": 40}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sample_build_with_fine(tmp_path_factory: pytest.TempPathFactory, sample_build: Path) -> Path:
    """The sample build with one kept fine caption: the offline 135M model's answers rarely pass the fine
    checks (on these clips none does), so the exports of fine captions and stage 2 are tested on a copy
    whose first captioned clip holds the answer a capable LLM gives, marked kept as the fine step marks it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("sample-build-fine")
    (root / "input").symlink_to(sample_build.parent / "input")  # the inputs stay beside the build, as there
    folder = root / "out"
    shutil.copytree(sample_build, folder, symlinks=True)
    for shard in sorted((folder / "shards").glob("*.parquet")):
        rows = pq.read_table(shard).to_pylist()
        for row in rows:
            if row["coarse_caption"] and row["label"]:
                row["fine_caption"] = (f"The person's face, voice and words fit together: the expression at the peak and the "
                                       f"tone both point to one state, so the person in the video feels {row['label']}.")  # fmt: skip
                row["fine_status"] = "kept"
                break
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    return folder
