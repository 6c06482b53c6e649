"""Tokenizers and chat templates built locally to mimic each thinking family (nothing downloads).

Each family keeps what m1_budget reads: the special tokens (where thinking markers live), the chat
template's generation prompt (R1 opens ``<think>\\n`` itself; Qwen3's ``enable_thinking=false``
closes it; gpt-oss takes ``reasoning_effort``) and the end-of-turn token. The system prompts are
shortened from the real templates (named beside each).
"""

from __future__ import annotations

from pathlib import Path

from m1_harness.devmodels import tiny_qwen2

CHATML_TURNS = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"

FAMILIES: dict[str, dict] = {
    # Qwen/Qwen3-*: tokenizer_config.json chat_template (generation prompt and enable_thinking switch)
    "qwen3": dict(
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        eos_token="<|im_end|>",
        chat_template=CHATML_TURNS + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
        "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}"
        "{% endif %}{% endif %}",
    ),
    # deepseek-ai/DeepSeek-R1-Distill-*: the template opens thinking itself
    "deepseek_r1": dict(
        special_tokens=[
            "<｜end▁of▁sentence｜>",
            "<｜begin▁of▁sentence｜>",
            "<｜User｜>",
            "<｜Assistant｜>",
            "<think>",
            "</think>",
        ],
        eos_token="<｜end▁of▁sentence｜>",
        bos_token="<｜begin▁of▁sentence｜>",
        chat_template="{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}{{ '<｜User｜>' + m.content }}"
        "{% else %}{{ '<｜Assistant｜>' + m.content + '<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}",
    ),
    # openai/gpt-oss-*: harmony (system message with "Reasoning: <effort>", then <|start|>assistant)
    "gpt_oss": dict(
        special_tokens=[
            "<|endoftext|>",
            "<|start|>",
            "<|end|>",
            "<|message|>",
            "<|channel|>",
            "<|return|>",
            "<|call|>",
        ],
        eos_token="<|return|>",
        chat_template="{{ '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\\n"
        "Reasoning: ' + (reasoning_effort | default('medium')) + '\\n\\n# Valid channels: analysis, commentary, "
        "final.<|end|>' }}{% for m in messages %}{{ '<|start|>' + m.role + '<|message|>' + m.content + '<|end|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|start|>assistant' }}{% endif %}",
    ),
    # mistralai/Magistral-Small-2509: [THINK] tokens, described in the default system prompt
    "magistral": dict(
        special_tokens=[
            "<unk>",
            "<s>",
            "</s>",
            "[INST]",
            "[/INST]",
            "[SYSTEM_PROMPT]",
            "[/SYSTEM_PROMPT]",
            "[THINK]",
            "[/THINK]",
        ],
        eos_token="</s>",
        bos_token="<s>",
        chat_template="{{ bos_token }}{{ '[SYSTEM_PROMPT]First draft your thinking process (inner monologue) until "
        "you arrive at a response.[THINK]Your thoughts.[/THINK]Here, provide a self-contained response."
        "[/SYSTEM_PROMPT]' }}{% for m in messages %}{% if m.role == 'user' %}{{ '[INST]' + m.content + '[/INST]' }}"
        "{% else %}{{ m.content + eos_token }}{% endif %}{% endfor %}",
    ),
    # microsoft/Phi-4-reasoning: ChatML with <|im_sep|>, the <think> format in the system prompt
    "phi4_reasoning": dict(
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_sep|>", "<think>", "</think>"],
        eos_token="<|im_end|>",
        chat_template="{{ '<|im_start|>system<|im_sep|>You are Phi. Please structure your response into two main "
        "sections: Thought and Solution using the specified format: <think> {Thought section} </think> "
        "{Solution section}.<|im_end|>' }}{% for m in messages %}{{ '<|im_start|>' + m.role + '<|im_sep|>' + "
        "m.content + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}",
    ),
    # FreedomIntelligence/HuatuoGPT-o1-8B: the Llama-3.1 template, nothing about thinking in it
    "huatuo_o1": dict(
        special_tokens=[
            "<|end_of_text|>",
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        eos_token="<|eot_id|>",
        bos_token="<|begin_of_text|>",
        chat_template="{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m.role + "
        "'<|end_header_id|>\\n\\n' + m.content + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    ),
    # UCSC-VLAA/m1-*: the Qwen2.5 ChatML template (devmodels' default)
    "m1": {},
}

# A boxed answer every preset writes after its thinking, and the options it is scored against.
ANSWER = "The answer is \\boxed{A}."
OPTIONS = {"A": "Pneumonia", "B": "Asthma"}

# The folder name carries the family where the name is what tells it (HuatuoGPT-o1).
DIR_NAMES = {"huatuo_o1": "HuatuoGPT-o1-8B-tiny"}


def family_model(root: Path, family: str) -> Path:
    """A tiny Qwen2 with the family's tokenizer and chat template, built once under ``root``; larger
    initial weights than the default, so its greedy output varies instead of repeating one token."""
    return tiny_qwen2(
        Path(root) / DIR_NAMES.get(family, f"tiny-{family}"),
        num_heads=2,
        num_kv_heads=1,
        initializer_range=0.2,
        **FAMILIES[family],
    )
