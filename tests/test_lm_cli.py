"""m1_budget end to end through the plain `lm_eval` command, on a real small chat model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_lm_eval_command_runs_m1_budget_on_smollm2(python_env, tmp_path):
    from m1_harness.devmodels import smollm2

    model = smollm2()
    out_dir = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "lm_eval"), "--model", "m1_budget",
        "--model_args", f"pretrained={model},engine=hf,thinking_budget=24,forcing=2,answer_budget=12",
        "--tasks", "medqa", "--limit", "5", "--batch_size", "5",
        "--output_path", str(out_dir), "--log_samples",
    ]
    run = subprocess.run(cmd, env=python_env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]

    (results,) = out_dir.rglob("results_*.json")
    data = json.loads(results.read_text())
    assert data["n-samples"]["medqa"]["effective"] == 5
    from conftest import rescored_accuracy

    assert data["results"]["medqa"]["acc,none"] == pytest.approx(rescored_accuracy(out_dir, "medqa"))

    (samples,) = out_dir.rglob("samples_medqa_*.jsonl")
    responses = [json.loads(line)["resps"][0][0] for line in samples.read_text().splitlines()]
    assert len(responses) == 5
    assert all(r.startswith("<|im_start|>think\n") and "\n<|im_start|>answer\n" in r for r in responses)

    (traces,) = (out_dir / "m1_traces").glob("*.jsonl")
    records = [json.loads(line) for line in traces.read_text().splitlines()]
    assert sorted(r["doc_id"] for r in records) == [0, 1, 2, 3, 4]
    for rec, text in zip(sorted(records, key=lambda r: r["doc_id"]), responses):
        # the budget holds per request, across all rounds, forced tokens included
        assert rec["thinking_tokens"] == rec["generated_tokens"] + rec["forced_tokens"] <= 24
        assert rec["forcing_rounds"] <= 2 and rec["answer_tokens"] <= 12
        # "Final Answer:" if and only if the budget cut the thinking
        assert ("<|im_start|>answer\nFinal Answer:" in text) == rec["hit_budget"]
    assert "m1_budget:" in run.stderr and "mean_thinking_tokens" in run.stderr
