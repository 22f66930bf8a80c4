"""The bundled Emotion-LLaMA trainer: a causal LM with LoRA and one linear projector per feature stream,
trained on the build's shards (train.py), evaluated with the MER2023 protocol and run on new clips
(evaluate.py)."""
