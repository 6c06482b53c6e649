"""m1_budget end to end through the plain `lm_eval` command, on a real small chat model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rescore import rescored_accuracy


@pytest.mark.slow
@pytest.mark.subprocess
def test_lm_eval_command_runs_m1_budget_on_smollm2(python_env, tmp_path):
    from m1_harness.devmodels import smollm2

    model = smollm2()
    out_dir = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "lm_eval"),
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={model},engine=hf,thinking_budget=24,forcing=2,answer_budget=12",
        "--tasks",
        "medqa",
        "--limit",
        "5",
        "--batch_size",
        "5",
        "--output_path",
        str(out_dir),
        "--log_samples",
    ]
    run = subprocess.run(cmd, env=python_env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]

    (results,) = out_dir.rglob("results_*.json")
    data = json.loads(results.read_text())
    assert data["n-samples"]["medqa"]["effective"] == 5
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


@pytest.mark.subprocess
def test_results_file_records_versions_engine_settings_and_the_chat_template_truth(tiny_model, python_env, tmp_path):
    """lm-eval says an "-instruct"/"chat" model's chat template "is not applied"; m1_budget applies it."""
    from m1_harness.versions import library_versions

    model = tmp_path / "tiny-chat-instruct"
    model.symlink_to(tiny_model, target_is_directory=True)
    out_dir = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "lm_eval"),
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={model},engine=hf,thinking_budget=8,answer_budget=4,cache=off",
        "--tasks",
        "m1_demo",
        "--limit",
        "2",
        "--output_path",
        str(out_dir),
    ]
    run = subprocess.run(cmd, env=python_env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    stderr = " ".join(run.stderr.split())  # lm-eval wraps long lines
    assert "chat template is not applied" not in stderr
    assert (
        "m1_budget applies the model's chat template to every prompt itself "
        "(lm-eval's --apply_chat_template is not needed)"
    ) in stderr

    (results,) = out_dir.rglob("results_*.json")
    info = json.loads(results.read_text())["config"]["m1_budget"]
    assert info["engine"] == "hf"
    assert info["versions"] == library_versions()
    assert set(info["versions"]) == {"m1_harness", "lm_eval", "torch", "transformers", "vllm", "python"}
    settings = info["settings"]
    assert (settings["pretrained"], settings["thinking_budget"], settings["answer_budget"], settings["forcing"]) == (
        str(model),
        8,
        4,
        0,
    )
    assert (settings["device"], settings["batch_size"], settings["max_model_len"], settings["cache"]) == (
        "cpu",
        1,
        4096,
        "off",
    )
    assert "gpu_memory_utilization" not in settings  # vLLM-only settings are not this engine's
