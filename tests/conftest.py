"""Shared fixtures: the real eval data beside the repo, the tiny models, one shared lm-eval run, lm-eval's
task index built once, plugin isolation."""

from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from m1tiny import chatty_tiny_qwen2
from repo_paths import SHARED_EVAL

# Tests read the real benchmark files through the project's own setting, like users do.
if not os.environ.get("M1_HARNESS_DATA") and SHARED_EVAL.is_dir():
    os.environ["M1_HARNESS_DATA"] = str(SHARED_EVAL)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def eval_data_dir() -> Path:
    path = Path(os.environ.get("M1_HARNESS_DATA", SHARED_EVAL))
    if not (path / "medqa.jsonl").is_file():
        pytest.fail(f"the real eval sets are needed: set M1_HARNESS_DATA (looked in {path})")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Qwen2 chat model built once per test session (no download)."""
    from m1_harness.devmodels import tiny_qwen2

    return tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def vllm_tiny(tmp_path_factory) -> Path:
    """The tiny model in a layout vLLM loads; vllm-marked tests fail (never skip) where vLLM is missing."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"vLLM cannot be imported ({exc}): run vllm-marked tests in .venv-vllm (make test-vllm)")
    from m1_harness.devmodels import tiny_qwen2_vllm

    return tiny_qwen2_vllm(tmp_path_factory.mktemp("vllm-tiny") / "tiny")


@pytest.fixture(scope="session")
def chatty_tiny(tmp_path_factory) -> str:
    """The tiny Qwen2 that talks (helpers/m1tiny.py), built once for all the test files that run it."""
    import torch

    torch.set_num_threads(1)  # tiny matmuls: threads only contend on a shared 2-core machine
    return str(chatty_tiny_qwen2(tmp_path_factory.mktemp("models") / "chatty-tiny"))


@dataclass
class LmEvalRun:
    """What one lm-eval run returned and the trace records m1_budget wrote beside it."""

    results: dict
    records: list[dict]


@pytest.fixture(scope="session")
def tiny_lm_eval_run(chatty_tiny, eval_data_dir, tmp_path_factory) -> LmEvalRun:
    """One lm_eval.simple_evaluate of m1_budget on the chatty tiny model, shared by the tests that read what
    lm-eval returns and what m1_budget recorded, instead of one run each: medqa, 3 items, 2 seeded samples
    each (seed 3, temperature 0.7, top_p 0.9), thinking budget 24, forcing 1, answer budget 16."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from m1_harness.paths import shipped_dir

    out = tmp_path_factory.mktemp("lm-eval-run")
    res = lm_eval.simple_evaluate(
        model="m1_budget",
        model_args=f"pretrained={chatty_tiny},engine=hf,dtype=float32,thinking_budget=24,forcing=1,answer_budget=16,"
        f"samples=2,seed=3,trace_path={out / 'tr.jsonl'},cache_dir={out / 'c'}",
        tasks=["medqa"],
        limit=3,
        log_samples=True,
        gen_kwargs="do_sample=true,temperature=0.7,top_p=0.9",
        task_manager=TaskManager(include_path=str(shipped_dir("tasks"))),
    )
    return LmEvalRun(res, [json.loads(line) for line in (out / "tr.jsonl").read_text().splitlines()])


@pytest.fixture(scope="session")
def _task_indexes() -> dict:
    return {}


@pytest.fixture
def lm_eval_task_index(_task_indexes, monkeypatch):
    """lm-eval scans its thousands of task YAMLs for every TaskManager (15 s or more here): the tests that
    go through lm-eval's own entry points (its CLI, m1-harness sweep) share one scan per set of folders
    (a deep copy each); everything else runs as it does for users."""
    from lm_eval.tasks._index import TaskIndex

    build = TaskIndex.build

    def once(paths, **kw):
        key = (tuple(str(p) for p in paths), tuple(sorted(kw.items())))
        if key not in _task_indexes:
            _task_indexes[key] = build(paths, **kw)
        return copy.deepcopy(_task_indexes[key])

    monkeypatch.setattr(TaskIndex, "build", staticmethod(once))


@pytest.fixture
def isolated_plugins(monkeypatch, tmp_path):
    """A fresh plugin manager and cache for one test; restored afterwards."""
    from m1_harness import plugins

    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture
def python_env(tmp_path) -> dict:
    """Environment for subprocesses: this interpreter's venv, offline, data set."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["M1_HARNESS_CACHE"] = str(tmp_path / "cache")
    return env


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) a skipped test fails: a missing dependency, data set or model must never pass quietly."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"
