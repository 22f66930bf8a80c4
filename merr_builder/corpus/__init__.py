"""Corpus steps: the units of the pipeline that run after the per-clip stages, over rows (see `base.py`)."""
