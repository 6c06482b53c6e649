"""Thinking-format markers: one home for the strings that delimit thinking and answer, per model family.

A trace is ``think_start + thinking + answer_sep + answer opening + answer``, where the answer
opening is ``answer_start`` after a natural end of thinking, and after a budget cut either the
family's own ``budget_cut_text`` (a text that itself closes thinking) or, where the family
documents none, ``answer_start`` followed by ``budget_cut_prefix`` (m1's "Final Answer:"; the two
composed by ``cut_opening`` when an overridden ``answer_start`` already ends in an answer label).

``detect`` picks a preset from a tokenizer's chat template and special tokens (``markers=auto``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from m1_harness.errors import UserError

# Families that document no budget-cut text get m1's (the s1 / m1 budget-forcing convention).
FINAL_ANSWER = "Final Answer:"


class MarkersError(UserError, ValueError):
    """markers=auto found no thinking format it knows."""


@dataclass(frozen=True)
class Markers:
    think_start: str  # appended after the chat prompt to open the thinking phase
    think_end: tuple[str, ...]  # strings/special tokens that end thinking when generated
    answer_start: str  # appended (after answer_sep) to open the answer phase
    budget_cut_prefix: str  # appended after answer_start only when the budget cut thinking
    answer_sep: str = "\n"  # between the thinking and the answer opening
    budget_cut_text: str = ""  # the family's own text that ends thinking at a budget cut (replaces
    # answer_start + budget_cut_prefix); "" when the family documents none

    def with_overrides(self, **kwargs) -> Markers:
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})

    def answer_prefix(self, cut: bool) -> str:
        """The text between the thinking and the answer: natural end, or budget cut."""
        if not cut:
            return self.answer_sep + self.answer_start
        if self.budget_cut_text:
            return self.answer_sep + self.budget_cut_text
        return self.answer_sep + cut_opening(self.answer_start, self.budget_cut_prefix)

    def template_state(self, prompt: str) -> tuple[str, str | None]:
        """Whether a rendered chat prompt already opens thinking (R1 distills, Qwen3 thinking-only
        templates) or opens and closes it (Qwen3 with ``enable_thinking=false``).

        Returns the prompt without that tail and ``"open"``, ``"closed"`` or None, so the budget
        loop opens thinking exactly once and a closed block becomes a budget of 0 (whose text,
        think_start + answer_sep + answer_start, is the same empty block)."""
        closed = self.think_start + self.answer_prefix(cut=False)
        for tail, state in ((closed, "closed"), (self.think_start, "open")):
            if tail.strip() and prompt.endswith(tail):
                return prompt[: len(prompt) - len(tail)], state
        return prompt, None


def cut_opening(answer_start: str, cut_prefix: str) -> str:
    """The answer opening after a budget cut: ``answer_start`` then ``cut_prefix``, composed where the
    two end in the same label, so an override ``answer_start=...answer\nAnswer:`` with m1's "Final
    Answer:" gives ``...answer\nFinal Answer:``, not ``Answer:Final Answer:``.

    The shared tail must be whole words: the prefix's text before it ends in a space (or is empty)
    and ``answer_start``'s (trailing spaces aside) ends in whitespace (or is empty), so a bare ":"
    never merges two labels; two different labels get a space between them. Anything else is the
    plain concatenation the presets define."""
    label = answer_start.rstrip(" ")
    for n in range(min(len(label), len(cut_prefix)), 0, -1):
        tail = cut_prefix[-n:]
        head, lead = cut_prefix[:-n], label[:-n]
        if (
            label.endswith(tail)
            and tail.strip()
            and (not head or head[-1].isspace())
            and (not lead or lead[-1].isspace())
        ):
            return lead + cut_prefix
    if label.endswith(":") and cut_prefix[:1].strip():  # two labels: "Response: Final Answer:"
        return label + " " + cut_prefix
    return answer_start + cut_prefix


PRESETS: dict[str, Markers] = {
    # m1 / s1 (UCSC-VLAA/m1-*, simplescaling/s1*): ChatML roles `think` and `answer`, from the m1
    # and s1 training data and eval code; "Final Answer:" is their budget-cut text.
    "m1": Markers(
        think_start="<|im_start|>think\n",
        think_end=("<|im_start|>", "<|im_end|>"),
        answer_start="<|im_start|>answer\n",
        budget_cut_prefix=FINAL_ANSWER,
    ),
    # Generic <think>...</think> (kept for existing users; qwen3 / deepseek_r1 are the exact presets).
    "think_tags": Markers(
        think_start="<think>\n",
        think_end=("</think>",),
        answer_start="</think>\n",
        budget_cut_prefix=FINAL_ANSWER,
    ),
    # HuatuoGPT-o1 (FreedomIntelligence/HuatuoGPT-o1-7B/8B/70B): its SFT_stage1.py writes responses as
    # "## Thinking\n\n{}\n\n## Final Response\n\n{}" and evaluation/scorer.py splits the answer on
    # "## Final Response". Plain Llama-3.1 / Qwen2.5 chat templates, no special tokens (auto knows
    # it by name). No budget-cut text documented: m1's "Final Answer:".
    "huatuo_o1": Markers(
        think_start="## Thinking\n\n",
        think_end=("## Final Response",),
        answer_start="## Final Response\n\n",
        budget_cut_prefix=FINAL_ANSWER,
        answer_sep="\n\n",
    ),
    # Qwen3 hybrid models (Qwen/Qwen3-*): the chat template writes an assistant turn as
    # "<think>\n" + reasoning + "\n</think>\n\n" + content and, with enable_thinking=false, adds
    # "<think>\n\n</think>\n\n" to the generation prompt (tokenizer_config.json chat_template);
    # vLLM's qwen3 reasoning parser ends thinking at "</think>". Budget cut: the Qwen3 technical
    # report's (sec. 4.3, thinking budget) stop-thinking text, verbatim.
    "qwen3": Markers(
        think_start="<think>\n",
        think_end=("</think>",),
        answer_start="</think>\n\n",
        budget_cut_prefix="",
        budget_cut_text="Considering the limited time by the user, I have to give the solution based on the "
        "thinking directly now.\n</think>.\n\n",
    ),
    # DeepSeek-R1 and its distills (deepseek-ai/DeepSeek-R1-Distill-*): the template's generation
    # prompt is "<｜Assistant｜><think>\n" (thinking opened by the template, so never opened twice:
    # Markers.template_state), output "...\n</think>\n\nanswer" (model card; vLLM deepseek_r1
    # parser). No budget-cut text documented: m1's "Final Answer:".
    "deepseek_r1": Markers(
        think_start="<think>\n",
        think_end=("</think>",),
        answer_start="</think>\n\n",
        budget_cut_prefix=FINAL_ANSWER,
    ),
    # gpt-oss (openai/gpt-oss-*), the harmony format (openai-harmony): generation prompt
    # "<|start|>assistant", reasoning in "<|channel|>analysis<|message|>...<|end|>", the answer in
    # "<|start|>assistant<|channel|>final<|message|>...<|return|>"; no newline between messages (what
    # openai_harmony's render_conversation writes; tests/test_formats.py checks it).
    # No budget-cut text documented (vLLM's gptoss parser only detects the boundary): "Final Answer:".
    "gpt_oss": Markers(
        think_start="<|channel|>analysis<|message|>",
        think_end=("<|end|>",),
        answer_start="<|end|><|start|>assistant<|channel|>final<|message|>",
        budget_cut_prefix=FINAL_ANSWER,
        answer_sep="",
    ),
    # Magistral (mistralai/Magistral-Small-2509 and later, tekken v13): special tokens [THINK] and
    # [/THINK]; its system prompt asks for "[THINK]...thoughts...[/THINK]Here, provide a
    # self-contained response." (vLLM parser/mistral.py "special_token" encoding); mistral_common's
    # InstructTokenizerV13.encode_think writes [THINK] + thinking + [/THINK] with no separator. No
    # budget-cut text documented: m1's "Final Answer:".
    "magistral": Markers(
        think_start="[THINK]",
        think_end=("[/THINK]",),
        answer_start="[/THINK]",
        budget_cut_prefix=FINAL_ANSWER,
        answer_sep="",
    ),
    # Phi-4-reasoning (microsoft/Phi-4-reasoning, -plus): ChatML with <|im_sep|>; its system prompt
    # asks for "<think> {Thought section} </think> {Solution section}" (model card, chat template),
    # and the model writes "<think>\n...\n</think>\n\n" (as sample outputs of the Phi-4 reasoning models
    # show; <think> and </think> are tokens of their vocabulary). No budget-cut text documented:
    # "Final Answer:".
    "phi4_reasoning": Markers(
        think_start="<think>\n",
        think_end=("</think>",),
        answer_start="</think>\n\n",
        budget_cut_prefix=FINAL_ANSWER,
    ),
}

# Where the answer part of a full trace begins, for scoring: the last of these that occurs. Every
# preset's answer opening is one (without its whitespace, which a model may write differently; a
# budget_cut_text contains its preset's opening), and harmony's final-channel header alone, which
# ends where gpt_oss's opening ends and also splits raw gpt-oss output.
ANSWER_SPLITS = tuple(
    dict.fromkeys([*(m.answer_start.strip() for m in PRESETS.values()), "<|channel|>final<|message|>"])
)

OVERRIDES = ("think_start", "think_end", "answer_start", "budget_cut_prefix", "budget_cut_text")


def _special_tokens(tokenizer) -> set[str]:
    """Added / special tokens by name (where thinking markers live), for detection."""
    names = set(getattr(tokenizer, "all_special_tokens", None) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    names.update(str(t) for t in decoder.values())
    return names


def detect(tokenizer, name: str = "") -> tuple[str, str]:
    """The preset for a tokenizer and why, from its chat template and special tokens; ValueError
    (listing presets and override arguments) when nothing says which format the model thinks in."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # several named templates: the default one decides
        template = template.get("default", "") or " ".join(template.values())
    specials = _special_tokens(tokenizer)
    has = lambda s: s in template or s in specials  # noqa: E731
    lowered = str(name).lower()
    rules = [
        (
            "huatuogpt-o1" in lowered,
            "huatuo_o1",
            "the model name contains HuatuoGPT-o1 (its template is a plain "
            "Llama/Qwen one; the format is the model's own)",
        ),
        (has("<|channel|>") and has("<|message|>"), "gpt_oss", "harmony tokens <|channel|> / <|message|>"),
        (has("[THINK]"), "magistral", "special token [THINK]"),
        (
            "<｜Assistant｜>" in template and has("<think>"),
            "deepseek_r1",
            "DeepSeek template (<｜Assistant｜>) with <think>",
        ),
        ("<|im_sep|>" in template and has("<think>"), "phi4_reasoning", "Phi-4 template (<|im_sep|>) with <think>"),
        (
            "<|im_start|>" in template and has("<think>"),
            "qwen3",
            "ChatML template with <think>"
            + (" and the enable_thinking switch" if "enable_thinking" in template else ""),
        ),
        (
            "<|im_start|>" in template,
            "m1",
            "ChatML template without thinking markers of its own (m1's <|im_start|>think / answer roles extend ChatML)",
        ),
    ]
    for ok, preset, why in rules:
        if ok:
            return preset, why
    what = "has no chat template" if not template else "has a chat template with no thinking markers m1_budget knows"
    raise MarkersError(
        f"m1_budget: markers=auto cannot tell how {name or 'this model'} thinks: its tokenizer {what}. "
        f"Pass markers=PRESET (one of {', '.join(PRESETS)}) or set the markers yourself with "
        f"{', '.join(OVERRIDES)} (see docs/thinking_formats.md)."
    )
