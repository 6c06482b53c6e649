"""The m1 text formats in one place: evaluation prompt, distillation prompt, SFT completion.

Evaluation, curation and training must agree on these strings to the character (M1_REFERENCE.md),
so they are built here and nowhere else.
"""

from __future__ import annotations

from m1_harness.thinking.markers import PRESETS

INSTRUCTIONS = {
    # the paper's default and chain-of-thought baseline instructions
    "m1": "Return your final response within \\boxed{}.",
    "cot": "Let's think step by step. Return your final response within \\boxed{}.",
}
END_OF_TURN = "<|im_end|>"


def options_text(options) -> str:
    """``{"A": "x", ...}`` (or a list of texts, lettered A, B, ...) as ``A. x`` lines.

    A pre-rendered string is kept as it is; no options give an empty string.
    """
    if not options:
        return ""
    if isinstance(options, str):
        return options.strip()
    if isinstance(options, dict):
        return "\n".join(f"{letter}. {text}" for letter, text in options.items())
    return "\n".join(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options))


def build_prompt(question: str, options, instruction: str = "m1") -> str:
    """Evaluation prompt: ``{question}\\n{A. text lines}\\n{instruction}``, exactly as the paper."""
    if instruction not in INSTRUCTIONS:
        raise ValueError(f"prompt={instruction!r} is not one of {sorted(INSTRUCTIONS)}")
    return f"{question}\n{options_text(options)}\n{INSTRUCTIONS[instruction]}"


def distill_prompt(question: str, options) -> str:
    """Teacher prompt of m1's distillation (instruction first, as HuatuoGPT-o1 / m1 ask R1)."""
    return f"{INSTRUCTIONS['m1']}\n{question}\n{options_text(options)}"


def sft_prompt(question: str, options=None) -> str:
    """The user message m1 trains on: the question and its option lines, no instruction."""
    lines = options_text(options)
    return f"{str(question).strip()}\n{lines}" if lines else str(question).strip()


def answer_text(answer: str) -> str:
    """m1's training answers start with ``Answer:`` (added unless already there)."""
    answer = str(answer).strip()
    return answer if "Answer:" in answer else "Answer: " + answer


def sft_completion(reasoning: str, answer: str, markers: str = "m1", end: str = END_OF_TURN) -> str:
    """The SFT target: ``<|im_start|>think\\n{reasoning}\\n<|im_start|>answer\\nAnswer: {answer}<|im_end|>``."""
    m = PRESETS[markers]
    return f"{m.think_start}{str(reasoning).strip()}{m.answer_prefix(cut=False)}{answer_text(answer)}{end}"


def require_chat_template(tokenizer) -> None:
    """m1 models read (and are trained on) chat-formatted prompts, so a tokenizer without a chat
    template is an error rather than a silent fallback to plain text."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', None) or 'this model'} has no chat "
            "template; m1 prompts are chat-formatted (pick a chat / instruct model)"
        )


def chat_prompt(user_text: str, tokenizer) -> str:
    """``user_text`` as the user turn of the model's chat template, opening the model's reply."""
    require_chat_template(tokenizer)
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
    )
