"""vLLM's EngineCore and Worker processes die with the run that started them (issue 22 class 7).

Before: after kill -9 of an in-process vLLM run they were re-parented to PID 1 and kept ~810 MB (a GPU's
memory there) for minutes. Marked ``vllm``: run with .venv-vllm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

pytestmark = pytest.mark.vllm

RUN = """
import os, sys, time
from m1_harness.thinking.engines.base import GenRequest
from m1_harness.thinking.engines.vllm import VLLMEngine
eng = VLLMEngine(sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=512, progress=False)
eng.generate([GenRequest(prompt_ids=[1, 2, 3], max_tokens=2)])
print("ready", flush=True)
time.sleep(600)
"""


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_vllm_children_die_with_a_killed_run(vllm_tiny, tmp_path, sig):
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "M1_HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(vllm_tiny)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = iter(proc.stdout.readline, "")  # vLLM logs to stdout too
        assert any(line.strip() == "ready" for line in lines), "the engine did not start"
        children = _descendants(proc.pid)
        assert children, "vLLM started no engine process: nothing to test"
        names = sorted({c.name() for c in children})
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"{len(alive)} of {len(children)} vLLM processes ({names}) outlived the run: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
