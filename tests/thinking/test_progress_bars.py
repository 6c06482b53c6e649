"""Every m1_budget progress bar counts requests (issue 25, item 6): the batched driver's bar was hidden
for a single group while the transformers engine's own bar counted its calls (rounds and probes)."""

from __future__ import annotations

import re

import pytest

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.scripted import Script, ScriptedEngine, StreamingScriptedEngine
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest

END = "<|im_end|>"


@pytest.mark.parametrize(
    "engine_cls, round_size", [(ScriptedEngine, None), (ScriptedEngine, 2), (StreamingScriptedEngine, None)]
)
def test_the_bar_counts_requests(capsys, engine_cls, round_size):
    scripts = {q: Script(["abc" + END, "de" + END], "B" + END) for q in "PQR"}
    engine = engine_cls(scripts, round_size=round_size) if round_size else engine_cls(scripts)
    forcer = BudgetForcer(engine, PRESETS["m1"])
    reqs = [BudgetRequest(engine.tokenizer.encode(q), thinking_budget=20, forcing=1, answer_budget=4) for q in "PQR"]
    forcer.run(reqs, progress=True, probes=[(8, 0)])  # 3 requests, 9 calls of their own plus probe calls
    bars = re.findall(r"m1_budget: *\d+%\S* *\| *(\d+)/(\d+) \[[^\]]*request", capsys.readouterr().err)
    assert bars and bars[-1] == ("3", "3")


@pytest.mark.slow
def test_m1_budget_builds_its_hf_engine_without_a_bar_of_its_own(tiny_model):
    from m1_harness.thinking.lm import M1BudgetLM

    lm = M1BudgetLM(pretrained=str(tiny_model), engine="hf", cache="off")
    assert lm.engine.progress is False
