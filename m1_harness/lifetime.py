"""Child processes that die with the process that started them, on every path (kill -9 included).

Why: vLLM's in-process engine starts an EngineCore process, which starts its Worker processes
(``multiprocessing``, fork or spawn). When the run was killed (kill -9, SIGTERM, a crash), they were
re-parented to PID 1 and held ~810 MB here (a GPU's memory there) for minutes. The kernel's
parent-death signal (``PR_SET_PDEATHSIG``) ends a child the moment its parent goes, with no code of
the parent running; a child must set it itself, so:
- forked children set it in an ``os.register_at_fork`` hook (vLLM's default start method);
- spawned Pythons see ``DIE_ENV`` in their environment and set it at start-up (``_autoload``, the
  interpreter's start-up hook, calls ``on_interpreter_start``);
- the owned vLLM server sets it between fork and exec (engines/owned.py).
Each child is tied to its own parent, so a Worker dies with its EngineCore, which dies with the run.
Linux only (glibc ``prctl``); elsewhere nothing is tied and the engines' own shutdown still runs.
Stdlib only: imported at interpreter start-up.
"""

from __future__ import annotations

import ctypes
import os
import signal

DIE_ENV = "M1_HARNESS_DIE_WITH_PARENT"  # set: every Python started below this process dies with its parent
_PR_SET_PDEATHSIG = 1
_tied = False


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (runs in the child)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):  # not glibc Linux
        pass


def tie_children() -> None:
    """From now on, every child this process starts (fork or spawn, and theirs) dies with its parent.
    Idempotent. SIGKILL: a parent that is gone cannot wait for a graceful stop, and the kernel frees
    the memory (GPU memory included) at once."""
    global _tied
    if _tied:
        return
    _tied = True
    os.environ[DIE_ENV] = "1"
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=die_with_parent)


def on_interpreter_start() -> None:
    """In a Python started with ``DIE_ENV`` set: tie itself to its parent, and its own children to itself."""
    if os.environ.get(DIE_ENV) and os.getppid() != 1:
        die_with_parent()
        tie_children()
