"""Feature tokens sit where the prompt's slots are, at the same positions in training and in generation
(the global stream's N merged patch tokens at <VideoHere> too), and generation continues exactly the
sequence the training forward sees."""

import random

import torch

from merr_builder.tasks import instruction
from merr_builder.trainer.data import Sample
from merr_builder.trainer.features import STREAMS, vision_record
from merr_builder.trainer.model import PAD_MULTIPLE, build_model


def _sample(streams, task="reason", answer="the person smiles so the label is happy", side=40):
    rng = random.Random(1)
    features = {s: torch.randn(*((3, side, side) if s == "global" else (STREAMS[s].dim,))).numpy() for s in streams}
    return Sample("clip", task, instruction(task, "I can't believe it", rng), answer, features, "happy")


def test_feature_tokens_sit_at_the_same_positions_in_training_and_generation(tiny_lm):
    streams = ["peak", "face", "audio"]
    model = build_model(tiny_lm, streams, lora_r=4).eval()
    short, long = _sample(streams), _sample(streams, answer="a much longer answer " * 5)
    short.instruction = short.instruction.replace("I can't believe it", "hi")  # a shorter prompt, so generation pads it
    train_batch = model.prompts.collate([short, long], train=True)
    generate_batch = model.prompts.collate([short, long], train=False)
    assert train_batch.ids.shape[1] % PAD_MULTIPLE == 0 and generate_batch.attention_mask[0, 0] == 0
    for row in range(2):
        train_ids = train_batch.ids[row][train_batch.attention_mask[row] == 1].tolist()
        generate_ids = generate_batch.ids[row][generate_batch.attention_mask[row] == 1].tolist()
        assert train_ids[: len(generate_ids)] == generate_ids  # the prompt, markers included, is the same sequence
        markers = [i for i, t in enumerate(generate_ids) if t < 0]
        assert [generate_ids[i] for i in markers] == [-1, -2, -3]  # peak at <VideoHere>, face and audio at <FeatureHere>
    text = model.tokenizer.decode([t for t in generate_ids[: markers[0]] if t >= 0])
    assert text.endswith("[INST] <video>")
    between = model.tokenizer.decode([t for t in generate_ids[markers[0] + 1 : markers[1]] if t >= 0])
    assert between.strip() == "</video> <feature>"
    # The embeddings at the markers are the projected features, in both layouts.
    for batch in (train_batch, generate_batch):
        embedded = model.embed(batch)
        for index, stream in enumerate(streams):
            rows, cols = torch.nonzero(batch.ids == -1 - index, as_tuple=True)
            expected = model.projectors[stream](batch.features[stream])[rows]
            torch.testing.assert_close(embedded[rows, cols], expected)


def test_generation_continues_what_the_training_forward_predicts(tiny_lm):
    streams = ["peak", "face", "audio"]
    model = build_model(tiny_lm, streams, lora_r=4).eval()
    sample = _sample(streams)
    prompt_only = model.prompts.collate([sample], train=False)
    with torch.no_grad():
        expected_first = int(model.logits(prompt_only)[0, -1].argmax())
    assert model.generate([sample], max_new_tokens=1)[0] == model.tokenizer.decode([expected_first], skip_special_tokens=True).strip()


def test_the_global_streams_merged_patch_tokens_sit_at_video_here_in_training_and_generation(tiny_lm, tiny_tower):
    streams = ["global", "peak", "face", "audio"]
    vision = vision_record(tiny_tower, "frame", 4)
    assert (vision["patches"], vision["width"], vision["tokens"]) == (25, 32, 7)  # 25 patches: 6 merged tokens and one padded
    model = build_model(tiny_lm, streams, lora_r=4, dims={"global": 4 * 32}, vision=vision).eval()
    short, long = _sample(streams), _sample(streams, answer="a much longer answer " * 5)
    short.instruction = short.instruction.replace("I can't believe it", "hi")
    train_batch, generate_batch = model.prompts.collate([short, long], train=True), model.prompts.collate([short, long], train=False)
    for row in range(2):
        train_ids = train_batch.ids[row][train_batch.attention_mask[row] == 1].tolist()
        generate_ids = generate_batch.ids[row][generate_batch.attention_mask[row] == 1].tolist()
        assert train_ids[: len(generate_ids)] == generate_ids
        markers = [i for i, t in enumerate(generate_ids) if t < 0]
        assert [generate_ids[i] for i in markers] == [-1] * 7 + [-2, -3, -4]  # 7 global + peak at <VideoHere>; face, audio
        assert markers[:8] == list(range(markers[0], markers[0] + 8))  # side by side
    assert model.tokenizer.decode([t for t in generate_ids[: markers[0]] if t >= 0]).endswith("[INST] <video>")
    assert model.tokenizer.decode([t for t in generate_ids[markers[7] + 1 : markers[8]] if t >= 0]).strip() == "</video> <feature>"
    # The global tokens: the tower's second-to-last layer without its class token, 4 neighbours side by side
    # (zero-padded to 28), then the projector; in both layouts.
    pixels = train_batch.features["global"]
    with torch.no_grad():
        hidden = model.tower.tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    merged = torch.cat([hidden, hidden.new_zeros(2, 3, 32)], 1).reshape(2, 7, 128)
    expected = model.projectors["global"](merged)
    for batch in (train_batch, generate_batch):
        embedded = model.embed(batch)
        rows, cols = torch.nonzero(batch.ids == -1, as_tuple=True)
        torch.testing.assert_close(embedded[rows, cols].reshape(2, 7, -1), expected)
        assert not any(p.requires_grad for p in model.tower.parameters()) and not model.tower.training
    model.train()
    assert not model.tower.training  # frozen: no dropout while the LM trains
    assert len(model.generate([short], max_new_tokens=2)) == 1
