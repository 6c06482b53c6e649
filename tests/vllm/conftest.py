"""Every test in this folder runs vLLM for real: marked ``vllm`` here, so ``make test`` deselects them in
.venv and runs them with .venv-vllm/bin/python, and no test file marks itself. (The ``vllm_tiny`` model is
in tests/conftest.py: a vllm-marked test outside this folder uses it too.)"""

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
