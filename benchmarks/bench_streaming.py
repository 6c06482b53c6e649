"""Streaming rounds at scale (issue 16): m1_budget on vLLM through the ``lm_eval`` CLI, 64+ medqa
requests, KV cache of 1 GiB (the batch's traces do not fit) against 4 GiB (they do).

What it records per run, from the trace records (token counts first: exact, and what turns into
GPU time): per round the context sent, the part vLLM took from its prefix cache
(``num_cached_tokens``) and the ids generated; "later rounds" are every forcing and answer round,
whose context the previous round of the same request computed. Then times: the generation wall
seconds (the sum of the records' amortised ``wall_time``), the whole CLI's wall seconds, and the
CPU seconds of the CLI process tree (``os.wait4``: it includes vLLM's engine processes and the
model load). The machine is a shared 2-core box, so wall times are noisy; CPU seconds less so.

Settings (``--setting``):
- ``never-stop``: SmolLM2-135M in its never-stop variant (``_m1bench.never_stop``),
  thinking_budget=256, answer_budget=8, forcing 0: every request thinks its whole budget.
- ``forcing2``: SmolLM2-135M as shipped, thinking_budget=256, answer_budget=8, forcing=2: it ends
  its thinking early, so forcing rounds really run.

Each setting runs with ``streaming=true`` at 1 and 4 GiB, and with ``streaming=false`` (barrier
rounds, the code before issue 16) at 1 GiB unless ``--no-barrier``. Results:
benchmarks/results/streaming_vllm.json. Run with the vLLM environment:
``.venv-vllm/bin/python benchmarks/bench_streaming.py --limit 64``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _m1bench as B  # noqa: E402

SETTINGS = {
    "never-stop": dict(model="never-stop", thinking_budget=256, answer_budget=8, forcing=0),
    "forcing2": dict(model="shipped", thinking_budget=256, answer_budget=8, forcing=2),
}


def run_cli(model: Path, setting: dict, kv_gib: int, streaming: bool, limit: int, work: Path) -> dict:
    """One ``lm_eval`` run in a child process; returns its summary row."""
    name = f"{setting['name']}-kv{kv_gib}-{'stream' if streaming else 'barrier'}"
    out, traces = work / name, work / f"{name}.jsonl"
    traces.unlink(missing_ok=True)
    args = (f"pretrained={model},engine=vllm,dtype=float32,enforce_eager=True,max_model_len=2048,cache=off,"
            f"thinking_budget={setting['thinking_budget']},answer_budget={setting['answer_budget']},"
            f"forcing={setting['forcing']},streaming={str(streaming).lower()},trace_path={traces}")
    cmd = [sys.executable, "-m", "lm_eval", "--model", "m1_budget", "--model_args", args, "--tasks", "medqa",
           "--limit", str(limit), "--output_path", str(out), "--log_samples"]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(kv_gib))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{name}: lm_eval failed (status {status}):\n{log[-4000:]}")
    recs = [json.loads(line) for line in traces.read_text().splitlines() if line.strip()]
    rounds = [r["round_tokens"] for r in recs]

    def total(key, first: bool | None = None):
        return sum(sum(v[key][:1] if first else v[key][1:] if first is False else v[key]) for v in rounds)

    later_ctx, later_cached = total("context_tokens", False), total("cached_tokens", False)
    return {
        "setting": setting["name"], "kv_cache_gib": kv_gib, "streaming": streaming, "requests": len(recs),
        "thinking_budget": setting["thinking_budget"], "answer_budget": setting["answer_budget"],
        "forcing": setting["forcing"], "model": setting["model"],
        "context_tokens": total("context_tokens"), "cached_tokens": total("cached_tokens"),
        "generated_tokens": total("generated_tokens"),
        "calls": sum(len(v["context_tokens"]) for v in rounds),
        "later_rounds_context_tokens": later_ctx, "later_rounds_cached_tokens": later_cached,
        "later_rounds_cached_share": round(later_cached / max(1, later_ctx), 4),
        "later_rounds_prefilled_tokens": later_ctx - later_cached,
        "mean_forcing_rounds": round(sum(r["forcing_rounds"] for r in recs) / len(recs), 3),
        "thinking_tokens": sum(r["thinking_tokens"] for r in recs),
        "answer_tokens": sum(r["answer_tokens"] for r in recs),
        "generate_wall_s": round(sum(r["wall_time"] for r in recs), 1),
        "cli_wall_s": round(wall, 1), "cli_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "texts_sha": _digest([r["text"] for r in recs]),  # equal across runs of a setting: same traces
    }


def _digest(texts: list[str]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--setting", choices=sorted(SETTINGS), action="append")
    ap.add_argument("--kv", type=int, action="append", help="KV cache GiB (default 1 and 4)")
    ap.add_argument("--no-barrier", action="store_true", help="skip the streaming=false runs")
    a = ap.parse_args()
    from m1_harness.devmodels import smollm2

    work = B.WORK / "streaming"
    work.mkdir(parents=True, exist_ok=True)
    shipped = smollm2()
    models = {"shipped": shipped, "never-stop": B.never_stop(shipped, B.WORK / "models" / "smollm2-135m-never-stop")}
    rows = []
    for name in a.setting or sorted(SETTINGS):
        setting = dict(SETTINGS[name], name=name)
        runs = [(kv, True) for kv in sorted(a.kv or [1, 4])] + ([] if a.no_barrier else [(min(a.kv or [1]), False)])
        for kv, streaming in runs:
            row = run_cli(models[setting["model"]], setting, kv, streaming, a.limit, work)
            print(json.dumps(row), flush=True)
            rows.append(row)
    path = B.RESULTS / "streaming_vllm.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    keys = {(r["setting"], r["kv_cache_gib"], r["streaming"], r["requests"]) for r in rows}
    rows = [r for r in old if (r["setting"], r["kv_cache_gib"], r["streaming"], r["requests"]) not in keys] + rows
    B.write_result("streaming_vllm", {"rows": rows})


if __name__ == "__main__":
    main()
