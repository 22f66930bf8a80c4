"""The visual objective description through a real vision-language server: a tiny random LLaVA the test
builds (`save_pretrained`), served by `transformers serve` on a loopback port and shown the peak frames."""

import json
import shutil

import pandas as pd
import pytest
from serving import transformers_serve

from merr_builder.annotate.llm.cache import AnswerCache
from merr_builder.annotate.llm.openai_server import OpenAIServerLLM
from merr_builder.annotate.llm.protocol import ChatRequest, Completion, GenerationSettings
from merr_builder.annotate.objective import MEASURED, clean_description, describe_peak_frames, make_vlm
from merr_builder.config import ConfigError, load_config

# The chat template of the tiny VLM: ChatML (SmolLM2's tokenizer) with an <image> placeholder per image part.
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IMAGE_TOKENS = 16  # (32 px / 8 px patches)²


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """A random LLaVA (CLIP vision tower, Llama text model, SmolLM2's tokenizer). Every token ends its answer,
    so each answer is one token long and complete, as a real model's short clause would be."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )  # fmt: skip

    from merr_builder.assets import smollm2_dir

    folder = tmp_path_factory.mktemp("tiny-vlm")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)  # fmt: skip
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=list(range(len(tokenizer))))  # fmt: skip
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default", image_seq_length=IMAGE_TOKENS)  # fmt: skip
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = list(range(len(tokenizer)))
    model.save_pretrained(folder)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", chat_template=TEMPLATE,
        num_additional_image_tokens=1,
    )  # fmt: skip
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vlm_server(tiny_vlm):
    with transformers_serve(tiny_vlm) as url:
        yield url, str(tiny_vlm)


def test_a_vlm_answer_becomes_the_clause_of_the_template_or_is_refused_with_a_reason():
    assert clean_description(Completion("This person in the video is Talking to a man.", "stop", 9)) == ("talking to a man", "")
    assert clean_description(Completion(' "sitting at a desk, looking down" ', "stop", 7)) == ("sitting at a desk, looking down", "")
    assert clean_description(Completion("TV anchor reading news", "stop", 4))[0] == "TV anchor reading news"
    assert clean_description(Completion("  ", "stop", 0)) == (None, "the VLM answer was empty")
    assert clean_description(Completion("talking to a man, possibly discus", "length", 48))[1].startswith("the VLM answer was cut off")
    assert clean_description(Completion("a " * 200, "stop", 200))[1].startswith("the VLM answer was longer")


def test_an_image_travels_as_a_data_url_and_is_part_of_the_cache_key(shared_data):
    jpeg = (shared_data / "single_face.jpg").read_bytes()
    user = ChatRequest("s", "describe", jpeg).messages()[1]["content"]
    assert user[0]["image_url"]["url"].startswith("data:image/jpeg;base64,") and user[1] == {"type": "text", "text": "describe"}
    assert ChatRequest("s", "describe").messages()[1]["content"] == "describe"
    assert ChatRequest("s", "u").identity() == {"system": "s", "user": "u"}  # text-only keys as before: old caches still hit
    model, settings = {"name": "m", "sha256": ""}, GenerationSettings()
    keys = {AnswerCache.key(ChatRequest("s", "u", image), model, settings)
            for image in (None, jpeg, (shared_data / "multi_face.jpg").read_bytes())}  # fmt: skip
    assert len(keys) == 3


def test_the_in_process_backend_refuses_images_naming_the_way_that_takes_them(tiny_lm, shared_data):
    from merr_builder.annotate.llm.hf import TransformersLLM

    llm = TransformersLLM(tiny_lm, batch_size=2)
    with pytest.raises(ValueError, match="objective_backend openai"):
        llm.generate([ChatRequest("s", "u", (shared_data / "single_face.jpg").read_bytes())], GenerationSettings())


def test_the_objective_backend_needs_a_server_and_a_model():
    with pytest.raises(ConfigError, match="objective_server_url"):
        load_config(None, ["annotate.objective_backend=openai"])
    assert make_vlm(load_config(None, []).annotate) is None  # the default: measured facts, no server


def test_the_server_sees_the_peak_frame(vlm_server, shared_data, tmp_path):
    url, model = vlm_server
    frames = {name: (shared_data / f"{name}.jpg").read_bytes() for name in ("single_face", "multi_face")}
    client = OpenAIServerLLM(url, model).client
    usage = [client.chat.completions.create(model=model, messages=ChatRequest("s", "u", image).messages(), max_tokens=4).usage
             for image in (None, frames["single_face"])]  # fmt: skip
    assert usage[1].prompt_tokens - usage[0].prompt_tokens == IMAGE_TOKENS  # the image reached the model as tokens

    config = load_config(None, ["annotate.objective_backend=openai", f"annotate.objective_server_url={url}",
                                f"annotate.objective_server_model={model}"]).annotate  # fmt: skip
    described = describe_peak_frames(frames, make_vlm(config), config, tmp_path / "llm.sqlite")  # type: ignore[arg-type]
    assert set(described) == set(frames)
    for text, source in described.values():
        assert text and source == f"VLM {model} (objective-v1)"


def test_regeneration_describes_peak_frames_through_the_server_and_then_from_the_cache(tiny_vlm, sample_build, tmp_path):
    from flows.build import rerun_build

    out = tmp_path / "out"
    shutil.copytree(sample_build, out, symlinks=True)
    before = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)
    with transformers_serve(tiny_vlm) as url:
        overrides = ["annotate.objective_backend=openai", f"annotate.objective_server_url={url}",
                     f"annotate.objective_server_model={tiny_vlm}", "annotate.fine_backend=none"]  # fmt: skip
        rerun_build(out, overrides, ("annotate",), "merr annotate")
    after = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)

    annotation = ["visual_objective_description", "coarse_caption", "fine_caption", "fine_status", "provenance"]
    pd.testing.assert_frame_equal(before.drop(columns=annotation), after.drop(columns=annotation))
    for row in after.itertuples():
        source = json.loads(row.provenance)["annotations"]["visual_objective_description"]
        assert source == f"VLM {tiny_vlm} (objective-v1)", (row.clip_id, source)
        assert row.coarse_caption.startswith(f"This person in the video is {row.visual_objective_description}. ")
    assert not before.visual_objective_description.equals(after.visual_objective_description)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["annotation"]["visual_objective"] == {"backend": "openai", "prompt": "objective-v1"}
    assert manifest["models"]["objective_vlm"]["name"] == str(tiny_vlm)
    assert "vision-language model named under Models" in (out / "DATA_CARD.md").read_text()

    rerun_build(out, overrides, ("annotate",), "merr annotate")  # the server is gone: every description comes from the cache
    pd.testing.assert_frame_equal(after, pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True))


def test_unusable_answers_keep_the_measured_sentence_and_say_why(tiny_vlm, tmp_path, shared_data):
    # The same model, but only its end-of-text token ends an answer: a random model then runs to the limit.
    rambling = tmp_path / "rambling-vlm"
    shutil.copytree(tiny_vlm, rambling)
    generation = json.loads((rambling / "generation_config.json").read_text())
    (rambling / "generation_config.json").write_text(json.dumps({**generation, "eos_token_id": 2}))
    with transformers_serve() as url:  # one server, the model named by the request
        config = load_config(None, ["annotate.objective_backend=openai", f"annotate.objective_server_url={url}",
                                    f"annotate.objective_server_model={rambling}", "annotate.objective_max_new_tokens=8"]).annotate  # fmt: skip
        frames = {"c": (shared_data / "single_face.jpg").read_bytes()}
        described = describe_peak_frames(frames, make_vlm(config), config, tmp_path / "llm.sqlite")  # type: ignore[arg-type]
    assert described == {"c": (None, f"{MEASURED}: the VLM answer was cut off at objective_max_new_tokens")}
