"""Annotations: the coarse template caption, the label and its consistency gate (the fine LLM step: next)."""
