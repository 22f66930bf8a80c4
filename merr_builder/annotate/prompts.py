"""The paper's templates and prompts, versioned: the one definition every annotation step uses.

Verbatim from the Emotion-LLaMA paper's example (facts file §1.8-1.9); bump a version when its text
changes, since the version is recorded with every caption made from it.
"""

from __future__ import annotations

COARSE_TEMPLATE_VERSION = "coarse-v1"
# Verbatim, including "Saying:" without a closing period.
COARSE_TEMPLATE = (
    "This person in the video is {visual_objective_description}. "
    "The person's expression and actions include {visual_expression_description}, "
    "and the person's tone is {audio_tone_description}. Saying: {subtitle}"
)

FINE_PROMPT_VERSION = "fine-v1"
FINE_SYSTEM = "You are an emotion analysis expert. Please infer emotion label based on the given the emotional features."
FINE_QUESTION = "{coarse_caption} Please sort out the correct emotional clues and infer why the person in the video feels {label}."
