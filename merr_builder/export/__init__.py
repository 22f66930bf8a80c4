"""Exports of a finished build into the layouts other trainers read (Emotion-LLaMA's, LLaMA-Factory's)."""
