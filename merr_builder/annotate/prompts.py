"""The paper's templates and prompts, versioned: the one definition every annotation step uses.

Verbatim from the Emotion-LLaMA paper's example (facts file §1.8-1.9); bump a version when its text
changes, since the version is recorded with every caption made from it.
"""

from __future__ import annotations

COARSE_TEMPLATE_VERSION = "coarse-v2"  # 2: the silent and the unquoted forms; AU phrases lower case in the sentence
# Verbatim, including "Saying:" without a closing period: a clip whose English words may be quoted.
COARSE_TEMPLATE = (
    "This person in the video is {visual_objective_description}. "
    "The person's expression and actions include {visual_expression_description}, "
    "and the person's tone is {audio_tone_description}. Saying: {subtitle}"
)
# Ours, where the template would state something false or ungrammatical (speech/subtitle.py says when):
# speech was heard but its words are doubtful or not in English, so nothing is quoted;
COARSE_UNQUOTED = (
    "This person in the video is {visual_objective_description}. "
    "The person's expression and actions include {visual_expression_description}, "
    "and the person's tone is {audio_tone_description}."
)
# no speech at all ("the person's tone is no audible speech" is no sentence);
COARSE_SILENT = (
    "This person in the video is {visual_objective_description}. "
    "The person's expression and actions include {visual_expression_description}, and the person does not speak."
)
# without ASR to hear the tone by (speech.backend none): a sidecar's words, or (not in English) none.
COARSE_TONELESS = (
    "This person in the video is {visual_objective_description}. "
    "The person's expression and actions include {visual_expression_description}. Saying: {subtitle}"
)
COARSE_EXPRESSION_ONLY = (
    "This person in the video is {visual_objective_description}. "
    "The person's expression and actions include {visual_expression_description}."
)

FINE_PROMPT_VERSION = "fine-v1"
FINE_SYSTEM = "You are an emotion analysis expert. Please infer emotion label based on the given the emotional features."
FINE_QUESTION = "{coarse_caption} Please sort out the correct emotional clues and infer why the person in the video feels {label}."

OBJECTIVE_PROMPT_VERSION = "objective-v1"
# Our wording: the authors' MiniGPT-v2 prompt was never published (facts file §1.5). The answer completes the
# coarse template's first sentence ("This person in the video is ..."), as the paper's example does.
OBJECTIVE_SYSTEM = "You describe video frames factually and briefly."
OBJECTIVE_QUESTION = (
    "This frame is the moment of a video clip where the person's expression peaks. Complete the sentence "
    "'This person in the video is ...' with one short clause about what the person is doing, their gestures "
    "and the scene. Do not name an emotion. Answer with the clause only."
)

TRANSLATE_PROMPT_VERSION = "translate-v1"
# Ours: the authors' English subtitles came with MER2023 and their making is not published (facts file §1.4).
TRANSLATE_SYSTEM = "You translate film and TV subtitles into natural English."
TRANSLATE_QUESTION = (
    "Translate this subtitle (language code: {language}) into English. Keep its meaning and tone; add nothing. "
    "Answer with the English translation only.\n\n{text}"
)
