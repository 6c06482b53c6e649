"""Generation engines: "generate these token prompts with these limits", nothing more.

The budget algorithm (m1_harness.thinking.budget) drives any object with this interface; engines know
nothing about thinking, forcing or markers. Engines are imported lazily by ``load_engine`` so that
importing m1_harness never imports torch-heavy or CUDA-only packages.
"""

from __future__ import annotations

import importlib.util

from m1_harness.thinking.engines.base import Engine, EngineError, GenRequest, GenResult, data_parallel_ranks

__all__ = ["Engine", "GenRequest", "GenResult", "load_engine", "resolve_engine_name", "ENGINES"]

ENGINES = ("auto", "hf", "vllm", "server")


def resolve_engine_name(name: str) -> str:
    """``auto`` means vLLM when it is importable and a GPU is present, else transformers."""
    if name not in ENGINES:
        raise EngineError(f"engine={name!r} is not an engine; choose one of {', '.join(ENGINES)}")
    if name != "auto":
        return name
    import torch

    return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "hf"


def load_engine(name: str, **kwargs) -> Engine:
    """Build the engine ``name`` (``hf``, ``vllm``, ``server`` or ``auto``) with engine-specific keyword args."""
    name = resolve_engine_name(name)
    if name == "server":
        from m1_harness.thinking.engines.server import ServerEngine

        return ServerEngine(**kwargs)
    if name == "vllm":
        dp = data_parallel_ranks(kwargs.get("data_parallel_size"))
        if dp > 1 and kwargs.get("distributed_executor_backend") != "external_launcher":
            from m1_harness.thinking.engines.owned import data_parallel_engine  # vLLM's DP lives in its server

            return data_parallel_engine(**kwargs)
        from m1_harness.thinking.engines.vllm import VLLMEngine

        return VLLMEngine(**kwargs)
    from m1_harness.thinking.engines.hf import HFEngine

    return HFEngine(**kwargs)
