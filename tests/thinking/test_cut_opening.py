"""The budget-cut text composes with an overridden answer opening (issue 25, item 4): the README's
``answer_start=<|im_start|>answer\\nAnswer:`` plus m1's "Final Answer:" once wrote ``Answer:Final Answer:``."""

import pytest

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.scripted import Script, ScriptedEngine
from m1_harness.thinking.markers import PRESETS, cut_opening
from m1_harness.thinking.request import BudgetRequest

END = "<|im_end|>"
README_OPENING = "<|im_start|>answer\nAnswer:"


@pytest.mark.parametrize(
    "answer_start, prefix, expected",
    [
        (README_OPENING, "Final Answer:", "<|im_start|>answer\nFinal Answer:"),
        ("<|im_start|>answer\nAnswer: ", "Final Answer:", "<|im_start|>answer\nFinal Answer:"),
        ("<|im_start|>answer\nFinal Answer:", "Final Answer:", "<|im_start|>answer\nFinal Answer:"),
        ("<|im_start|>answer\nResponse:", "Final Answer:", "<|im_start|>answer\nResponse: Final Answer:"),
        ("<|im_start|>answer\n", "Final Answer:", "<|im_start|>answer\nFinal Answer:"),  # the presets: unchanged
        ("[/THINK]", "Final Answer:", "[/THINK]Final Answer:"),
        ("## Final Response\n\n", "Final Answer:", "## Final Response\n\nFinal Answer:"),
        ("</think>\n\n", "", "</think>\n\n"),
    ],
)
def test_cut_opening(answer_start, prefix, expected):
    assert cut_opening(answer_start, prefix) == expected


def test_a_cut_under_the_readme_override_writes_one_answer_label():
    markers = PRESETS["m1"].with_overrides(answer_start=README_OPENING)
    engine = ScriptedEngine({"Q": Script(["abcdefghij" + END], " D" + END)})
    (cut,) = BudgetForcer(engine, markers).run([BudgetRequest(engine.tokenizer.encode("Q"), thinking_budget=6)])
    assert cut.hit_budget
    assert cut.text == "<|im_start|>think\nabcdef\n<|im_start|>answer\nFinal Answer: D"
    assert markers.answer_prefix(cut=False) == "\n" + README_OPENING  # a natural end keeps the override
