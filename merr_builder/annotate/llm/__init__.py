"""LLM backends behind one small protocol (the fine-grained annotation step's engine)."""
