"""Every test in this folder runs vLLM for real: marked ``vllm`` here, so ``make test`` deselects them in
.venv and runs them with .venv-vllm/bin/python, and no test file marks itself."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Before ``-m`` selects: this hook sees the whole session's items, so only this folder's get the mark."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def vllm_tiny(tmp_path_factory) -> Path:
    """The tiny model in a layout vLLM loads; vllm-marked tests fail (never skip) where vLLM is missing."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"vLLM cannot be imported ({exc}): run vllm-marked tests in .venv-vllm (make test-vllm)")
    from m1_harness.devmodels import tiny_qwen2_vllm

    return tiny_qwen2_vllm(tmp_path_factory.mktemp("vllm-tiny") / "tiny")
