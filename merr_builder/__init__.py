"""merr_builder: build the MERR multimodal emotion dataset from raw video, and train Emotion-LLaMA on it."""

__version__ = "0.1.0"
