"""The transformers backend with a tiny random Llama that the test builds and saves, loaded through the
backend's own code (no weights can be downloaded here)."""

from pathlib import Path

import pytest
import torch

from merr_builder.annotate.llm.hf import TransformersLLM
from merr_builder.annotate.llm.protocol import ChatRequest, GenerationSettings
from merr_builder.annotate.prompts import FINE_QUESTION, FINE_SYSTEM

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    corpus = [FINE_SYSTEM, FINE_QUESTION, "The person smiles, eyes widened and mouth open, speaking fast."] * 20
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    special = ["<unk>", "<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    raw.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=special))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def varied_llama(tmp_path_factory, tiny_llama) -> Path:
    """tiny_llama's shape and vocabulary with weights drawn 25 times wider: its greedy answers depend on
    the prompt (tiny_llama says the same thing to every prompt), so rows end at different steps."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("varied-llama")
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(folder)
    config = LlamaConfig.from_pretrained(tiny_llama)
    config.initializer_range = 0.5
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _requests() -> list[ChatRequest]:
    captions = ["The person smiles.", "The person's eyes widened and mouth open, speaking fast, " * 3, "Mouth open."]
    return [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=c, label="happy")) for c in captions]


def test_batched_generation_matches_one_at_a_time_in_the_callers_order(tiny_llama):
    settings = GenerationSettings(max_new_tokens=12)
    batched = TransformersLLM(tiny_llama, batch_size=8).generate(_requests(), settings)
    single = TransformersLLM(tiny_llama, batch_size=1)
    alone = [single.generate([r], settings)[0] for r in _requests()]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert all(0 < c.new_tokens <= 12 and c.finish_reason in ("stop", "length") for c in batched)


def test_the_model_is_identified_by_its_weights_hash(tiny_llama):
    model_id = TransformersLLM(tiny_llama).model_id()
    assert model_id["file"].endswith(".safetensors") and len(model_id["sha256"]) == 64


def _varied_requests() -> list[ChatRequest]:
    clue = "The person's eyes widened and mouth open, speaking fast. "
    return [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=clue * n, label="angry")) for n in (3, 1, 6, 2, 4)]


@pytest.mark.parametrize("attention", ["masked", "row_length"])
def test_static_decoding_gives_plain_generates_greedy_tokens(tiny_llama, attention):
    # Five prompts of different lengths in batches of 2 (the last one filled up), 40 new tokens (past the
    # decoder's every-16-steps check): each completion equals plain `generate` on that prompt alone.
    settings = GenerationSettings(max_new_tokens=40)
    fast = TransformersLLM(tiny_llama, batch_size=2, decode_attention=attention)
    plain = TransformersLLM(tiny_llama, batch_size=1, static_decode=False)
    assert fast.static_decode and not plain.static_decode
    reference = [plain.generate([r], settings)[0] for r in _varied_requests()]
    assert fast.generate(_varied_requests(), settings) == reference
    # The decoder (and its cache) is reused by the next call; nothing of the last batch leaks into it.
    assert fast.generate(_varied_requests()[::-1], settings) == reference[::-1]


def test_static_decoding_stops_each_row_at_its_own_end_of_sequence(tiny_llama):
    settings = GenerationSettings(max_new_tokens=20)
    plain = TransformersLLM(tiny_llama, batch_size=1, static_decode=False)
    first = plain.tokenizer(plain._prompt(_varied_requests()[0]), add_special_tokens=False, return_tensors="pt")
    generated = plain.model.generate(**first, max_new_tokens=6, do_sample=False, pad_token_id=plain.tokenizer.pad_token_id)
    stop_token = int(generated[0, -2])  # the 5th new token of the first prompt becomes an extra end-of-sequence token
    fast = TransformersLLM(tiny_llama, batch_size=4)
    for llm in (plain, fast):
        llm.model.generation_config.eos_token_id = [llm.tokenizer.eos_token_id, stop_token]
    reference = [plain.generate([r], settings)[0] for r in _varied_requests()]
    ours = fast.generate(_varied_requests(), settings)
    assert ours == reference
    assert ours[0].finish_reason == "stop" and ours[0].new_tokens <= 4


def test_automatic_rows_fit_the_kv_cache_in_its_share_of_free_memory():
    from transformers import LlamaConfig

    from merr_builder.annotate.llm.hf import GPU_MAX_ROWS, KV_SHARE, auto_rows
    from merr_builder.annotate.llm.static_decode import kv_bytes_per_token

    llama3_8b = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)
    kv = kv_bytes_per_token(llama3_8b, torch.bfloat16)
    assert kv == 2 * 32 * 8 * 128 * 2  # keys and values, 32 layers, 8 KV heads of 128, bf16
    assert auto_rows(123 * 2**30, 384, kv) == GPU_MAX_ROWS  # an H200 after the 16 GB of weights, real fine prompts
    assert auto_rows(62 * 2**30, 384, kv) == 792  # an 80 GB card
    for free in (62 * 2**30, 24 * 2**30, 9 * 2**30, 3 * 2**30):  # as many rows as the share holds, in eights
        rows = auto_rows(free, 832, kv)
        assert rows % 8 == 0 and rows * 832 * kv <= KV_SHARE * free < (rows + 8) * 832 * kv
    assert auto_rows(2**29, 832, kv) == 2 and auto_rows(10**6, 832, kv) == 1  # under 8 rows: what fits, never zero


def test_batch_size_auto_is_16_rows_on_the_cpu_and_a_number_is_kept(tiny_llama):
    from merr_builder.annotate.fine import make_llm
    from merr_builder.annotate.llm.hf import CPU_ROWS
    from merr_builder.config import AnnotateConfig

    auto = make_llm(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama))
    assert auto.batch_size is None and auto.rows_for(700) == CPU_ROWS == 16
    fixed = make_llm(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama, batch_size=3))
    assert fixed.rows_for(700) == 3


@pytest.mark.parametrize("attention, fused", [("masked", False), ("row_length", False), ("masked", True), ("row_length", True)])
def test_finished_rows_are_refilled_and_every_answer_is_what_plain_generate_gives_it(varied_llama, attention, fused):
    """Ten prompts through 3 rows: rows stop early at varied lengths (a token the model often says is
    made an end-of-sequence token), each finished row takes the next prompt, and every answer equals
    plain `generate` on its prompt alone; answers are handed on as their rows finish. With row-length
    attention each row's attention reads only the cache blocks it holds, and with fused layers the norms,
    RoPE and SwiGLU run compiled; the answers are the same."""
    clue = "The person's eyes widened and mouth open, speaking fast. "
    requests = [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=clue * n, label=label))
                for n, label in zip((3, 1, 6, 2, 4, 5, 1, 2, 3, 7), ("angry", "happy", "sad", "fear", "doubt") * 2)]  # fmt: skip
    settings = GenerationSettings(max_new_tokens=30)
    plain = TransformersLLM(varied_llama, batch_size=1, static_decode=False)
    said = []
    for request in requests:
        prompt = plain.tokenizer(plain._prompt(request), add_special_tokens=False, return_tensors="pt")
        output = plain.model.generate(**prompt, max_new_tokens=30, do_sample=False, pad_token_id=plain.tokenizer.pad_token_id)
        said.append(output[0, prompt.input_ids.shape[1] :].tolist())
    # The token whose first mention falls at the most different steps (and never first): rows then stop
    # at different steps, some after others have been refilled.
    def first_steps(token: int) -> list[int]:
        return [ids.index(token) for ids in said if token in ids]

    stop_token = max({t for ids in said for t in ids}, key=lambda t: (min(first_steps(t)) > 0, len(set(first_steps(t)))))
    fast = TransformersLLM(varied_llama, batch_size=3, decode_attention=attention, fuse_elementwise=fused)
    for llm in (plain, fast):
        llm.model.generation_config.eos_token_id = [llm.tokenizer.eos_token_id, stop_token]
    reference = [plain.generate([r], settings)[0] for r in requests]
    assert len({c.new_tokens for c in reference}) >= 4 and any(c.finish_reason == "stop" for c in reference)

    handed_on: list[int] = []
    ours = fast.generate(requests, settings, on_answer=lambda index, completion: handed_on.append(index))
    assert ours == reference
    assert fast._decoder.refills == len(requests) - 3
    # Every decoded token (an answer's, or its end-of-sequence) took one busy row-step; rows waited besides.
    busy = sum(c.new_tokens + (c.finish_reason == "stop") - 1 for c in ours)
    assert fast._decoder.busy_row_steps == busy < fast._decoder.row_steps
    # The chat header and system prompt every prompt starts with were prefilled once per group of rows.
    assert fast._decoder.shared_tokens > 0
    assert sorted(handed_on) == list(range(len(requests)))


def test_the_build_setting_chooses_row_length_attention_and_the_answers_stay(tiny_llama):
    from merr_builder.annotate.fine import make_llm
    from merr_builder.config import AnnotateConfig

    settings = GenerationSettings(max_new_tokens=20)
    masked = make_llm(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama))
    row_length = make_llm(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama, decode_attention="row_length"))
    assert (masked.decode_attention, row_length.decode_attention) == ("masked", "row_length")
    assert row_length.generate(_varied_requests(), settings) == masked.generate(_varied_requests(), settings)
    assert row_length._decoder.row_blocks is not None and masked._decoder.row_blocks is None


def test_the_build_setting_fuses_the_layers_elementwise_work_during_decoding_only(tiny_llama):
    from merr_builder.annotate.fine import make_llm
    from merr_builder.annotate.llm.fused_layers import ROPE_FUNCTION, _fusable_modules
    from merr_builder.config import AnnotateConfig

    settings = GenerationSettings(max_new_tokens=20)
    eager = make_llm(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama))
    fused = make_llm(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama, fuse_elementwise=True))
    modules = _fusable_modules(fused.model.get_decoder())
    assert len(modules) == 2 * 2 + 1 + 2  # two norms and an MLP per layer (2 layers), the final norm
    rope_home = __import__(type(fused.model.get_decoder().layers[0].self_attn).__module__, fromlist=["_"])
    eager_rope = getattr(rope_home, ROPE_FUNCTION)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # compiled afresh here, whatever earlier tests compiled, so the counts below are this test's
    counters.clear()
    seen_inside = []
    hook = modules[0].register_forward_hook(lambda module, args, output: seen_inside.append(
        ("forward" in module.__dict__, getattr(rope_home, ROPE_FUNCTION) is not eager_rope)))  # fmt: skip
    assert fused.generate(_varied_requests(), settings) == eager.generate(_varied_requests(), settings)
    hook.remove()
    # Fused while the decoder ran (the module's compiled forward, the compiled RoPE; the hook is on the
    # fused model's module only) and only then.
    assert seen_inside and all(inside == (True, True) for inside in seen_inside)
    assert counters["stats"]["unique_graphs"] >= 3 and not counters["graph_break"]  # each function whole, one graph or more
    assert not any("forward" in m.__dict__ for m in modules) and getattr(rope_home, ROPE_FUNCTION) is eager_rope


def test_the_shared_prefix_is_what_every_prompt_starts_with_leaving_each_a_token_of_its_own():
    from merr_builder.annotate.llm.static_decode import SHARED_PREFIX_MIN, shared_prefix

    head = list(range(100, 100 + SHARED_PREFIX_MIN + 4))
    assert shared_prefix([head + [1, 2], head + [1, 3], head + [1, 4, 5]]) == len(head) + 1
    assert shared_prefix([head, head + [5]]) == len(head) - 1  # the shorter keeps its last token
    assert shared_prefix([head + [1]]) == 0  # one prompt: nothing to share
    assert shared_prefix([head[: SHARED_PREFIX_MIN - 1] + [1], head[: SHARED_PREFIX_MIN - 1] + [2]]) == 0


@pytest.mark.parametrize("attention, fused", [("masked", False), ("row_length", False), ("row_length", True)])
def test_the_pinned_smollm2_answers_real_fine_prompts_as_plain_generate_does(attention, fused):
    """The real model the build uses on the fine step's real prompts (coarse captions of varied clues and
    subtitles, varied labels): greedy answers through 3 rows (refilled, the shared prefix run once; the
    layers' element-wise work fused, or not) are plain `generate`'s, token for token."""
    from merr_builder.assets import smollm2_dir

    captions = [
        "This person in the video is a woman seated at a table, looking to her left. The person's expression and actions "
        "include lip corner puller and cheek raiser, and the person's tone is loud and high-pitched, speaking fast. "
        "Saying: Mom, I passed the exam, I really passed it!",
        "This person in the video is a man in the centre of the frame. The person's expression and actions include brow "
        "lowerer and lip tightener, and the person's tone is loud. Saying: I told you a hundred times, don't touch my things.",
        "This person in the video is a woman, face turned down. The person's expression and actions include inner brow "
        "raiser, and the person does not speak.",
        "This person in the video is one of two people, on the left. The person's expression and actions include jaw drop "
        "and upper lid raiser, and the person's tone is high-pitched. Saying: What did you say?",
    ]
    labels = ["happy", "angry", "sad", "surprise"]
    requests = [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=c, label=l))
                for c, l in zip(captions * 2, labels + labels[::-1])]  # fmt: skip
    settings = GenerationSettings(max_new_tokens=40)
    plain = TransformersLLM(smollm2_dir(), batch_size=3, static_decode=False)
    reference = [plain.generate([r], settings)[0] for r in requests]
    ours = TransformersLLM(smollm2_dir(), batch_size=3, decode_attention=attention, fuse_elementwise=fused)
    assert ours.generate(requests, settings) == reference
    assert ours._decoder.refills == len(requests) - 3 and ours._decoder.shared_tokens > 0


def test_fp8_says_why_it_cannot_run_here_and_its_answers_are_keyed_apart(tiny_llama):
    from merr_builder.annotate.fine import llm_model_id, make_llm
    from merr_builder.config import AnnotateConfig, ConfigError, load_config

    fp8 = AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama, fp8=True)
    with pytest.raises(ValueError, match=r"annotate.fp8 needs a GPU of compute capability 8.9 or more .*here: the CPU"):
        make_llm(fp8)  # (this machine has no GPU; the benchmark runs FP8 on one)
    bf16 = llm_model_id(AnnotateConfig(fine_backend="transformers", model_dir=tiny_llama))
    assert llm_model_id(fp8) == {**bf16, "weights": llm_model_id(fp8)["weights"]} and "fp8" in llm_model_id(fp8)["weights"]
    with pytest.raises(ConfigError, match="fp8 applies to the in-process backends"):
        load_config(None, ["annotate.fine_backend=openai", "annotate.server_url=http://x/v1", "annotate.server_model=m", "annotate.fp8=true"])
