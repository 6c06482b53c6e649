"""Shared fixtures: the real eval data beside the repo, the tiny model, plugin isolation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
