"""Streaming rounds at scale (issue 16): m1_budget on vLLM through the ``lm_eval`` CLI, 64+ medqa
requests, KV cache of 1 GiB (the batch's traces do not fit) against 4 GiB (they do).

What it records per run, from the trace records (token counts first: exact, and what turns into
GPU time): per round the context sent, the part vLLM took from its prefix cache
(``num_cached_tokens``) and the ids generated; "later rounds" are every forcing and answer round,
whose context the previous round of the same request computed. Then times: the generation wall
seconds (the sum of the records' amortised ``wall_time``), the whole CLI's wall seconds, and the
CPU seconds of the CLI process tree (sampled: vLLM's engine processes included, and the
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

from m1_harness.records import read_records  # noqa: E402

SETTINGS = {
    "never-stop": dict(model="never-stop", thinking_budget=256, answer_budget=8, forcing=0),
    "forcing2": dict(model="shipped", thinking_budget=256, answer_budget=8, forcing=2),
}


def run_cli(model: Path, setting: dict, kv_gib: int, streaming: bool, limit: int, work: Path) -> dict:
    """One ``lm_eval`` run in a child process; returns its summary row."""
    name = f"{setting['name']}-kv{kv_gib}-{'stream' if streaming else 'barrier'}"
    out, traces = work / name, work / f"{name}.jsonl"
    traces.unlink(missing_ok=True)
    args = (
        f"pretrained={model},engine=vllm,dtype=float32,enforce_eager=True,max_model_len=2048,cache=off,"
        f"thinking_budget={setting['thinking_budget']},answer_budget={setting['answer_budget']},"
        f"forcing={setting['forcing']},streaming={str(streaming).lower()},trace_path={traces}"
    )
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "m1_budget",
        "--model_args",
        args,
        "--tasks",
        "medqa",
        "--limit",
        str(limit),
        "--output_path",
        str(out),
        "--log_samples",
    ]
    wall, cpu = cli(cmd, dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(kv_gib)), name)
    recs = list(read_records(traces))
    rounds = [r["round_tokens"] for r in recs]

    def total(key, first: bool | None = None):
        return sum(sum(v[key][:1] if first else v[key][1:] if first is False else v[key]) for v in rounds)

    later_ctx, later_cached = total("context_tokens", False), total("cached_tokens", False)
    return {
        "setting": setting["name"],
        "kv_cache_gib": kv_gib,
        "streaming": streaming,
        "requests": len(recs),
        "thinking_budget": setting["thinking_budget"],
        "answer_budget": setting["answer_budget"],
        "forcing": setting["forcing"],
        "model": setting["model"],
        "context_tokens": total("context_tokens"),
        "cached_tokens": total("cached_tokens"),
        "generated_tokens": total("generated_tokens"),
        "calls": sum(len(v["context_tokens"]) for v in rounds),
        "later_rounds_context_tokens": later_ctx,
        "later_rounds_cached_tokens": later_cached,
        "later_rounds_cached_share": round(later_cached / max(1, later_ctx), 4),
        "later_rounds_prefilled_tokens": later_ctx - later_cached,
        "mean_forcing_rounds": round(sum(r["forcing_rounds"] for r in recs) / len(recs), 3),
        "thinking_tokens": sum(r["thinking_tokens"] for r in recs),
        "answer_tokens": sum(r["answer_tokens"] for r in recs),
        "generate_wall_s": round(sum(r["wall_time"] for r in recs), 1),
        "cli_wall_s": wall,
        "cli_cpu_s": cpu,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "texts_sha": _digest([r["text"] for r in recs]),  # equal across runs of a setting: same traces
    }


def cli(cmd: list[str], env: dict, name: str) -> tuple[float, float]:
    """Run ``cmd``; its wall seconds and the CPU seconds of its whole process tree.

    vLLM's engine and worker processes are killed at shutdown, never waited for, so ``wait4``'s
    rusage misses them: the tree is sampled every 0.2 s instead (each process's last reading)."""
    import tempfile

    import psutil

    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        root, seen = psutil.Process(proc.pid), {}
        while proc.poll() is None:
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        t = p.cpu_times()
                        seen[p.pid] = t.user + t.system
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.2)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{name}: failed (status {proc.returncode}):\n{log.read()[-4000:]}")
    return round(time.perf_counter() - t0, 1), round(sum(seen.values()), 1)


def run_sweep(
    model: Path,
    budgets: list[int],
    forcings: list[int],
    kv_gib: int,
    limit: int,
    work: Path,
    code: str,
    answer_budget: int,
) -> dict:
    """``m1-harness sweep`` over the grid (``code``: this tree, or another checkout for today's
    per-setting sweep), and the largest setting alone; token totals of both from the trace records."""
    tag = f"sweep-{'this' if code == 'this' else 'today'}-kv{kv_gib}-{limit}"
    out, cache = work / tag, work / f"{tag}-cache"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    root = Path(__file__).resolve().parents[1] if code == "this" else Path(code)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(kv_gib), PYTHONPATH=str(root), M1_HARNESS_CACHE=str(cache))
    margs = (
        f"pretrained={model},engine=vllm,dtype=float32,enforce_eager=True,max_model_len=2048,"
        f"answer_budget={answer_budget}"
    )
    cmd = [
        sys.executable,
        "-m",
        "m1_harness",
        "sweep",
        "--model_args",
        margs,
        "--tasks",
        "medqa",
        "--budgets",
        ",".join(map(str, budgets)),
        "--forcing",
        ",".join(map(str, forcings)),
        "--output_path",
        str(out),
        "--limit",
        str(limit),
    ]
    wall, cpu = cli(cmd, env, tag)
    totals = dict.fromkeys(("context_tokens", "cached_tokens", "generated_tokens"), 0)
    per_setting = {}
    for f in sorted(out.glob("budget*_forcing*/traces.jsonl")):
        recs = list(read_records(f))
        row = {
            k: sum(sum(r["round_tokens"][k]) + r.get("probe_tokens", {}).get(k, 0) for r in recs)
            if "round_tokens" in recs[0]
            else None
            for k in totals
        }
        per_setting[f.parent.name] = dict(row, texts_sha=_digest([r["text"] for r in recs]))
        for k in totals:
            totals[k] += row[k] or 0
    return {
        "sweep_code": code,
        "kv_cache_gib": kv_gib,
        "requests": limit,
        "budgets": budgets,
        "forcing": forcings,
        "settings": len(per_setting),
        "sweep_wall_s": wall,
        "sweep_cpu_s": cpu,
        **totals,
        "prefilled_tokens": totals["context_tokens"] - totals["cached_tokens"],
        "per_setting": per_setting,
    }


def probe_floor(out: Path, model: Path, largest: str, blocks=(32, 16, 1)) -> dict:
    """What the probe answers of a sweep must prefill, from the per-setting trace records.

    Each distinct answer context of the grid but the largest setting's own (equal calls are sent
    once) continues a prefix vLLM has computed: prompt + thinking up to the cut, ``p`` ids. vLLM
    caches whole KV blocks only, so such a call prefills (a) its answer marker (new ids: no cache
    can serve them, the floor) and (b) the ``p mod block`` ids of the partial block at the cut. (b)
    is given for the block sizes in ``blocks`` (1: a cache of single ids)."""
    from transformers import AutoTokenizer

    from m1_harness.thinking.markers import PRESETS

    tok = AutoTokenizer.from_pretrained(str(model))
    prefix = {
        cut: len(tok.encode(PRESETS["m1"].answer_prefix(cut=cut), add_special_tokens=False)) for cut in (False, True)
    }
    own, seen = set(), set()
    for f in sorted(out.glob("budget*_forcing*/traces.jsonl")):
        for n, r in enumerate(read_records(f)):
            call = (n, r["prompt_tokens"] + r["thinking_tokens"], bool(r["hit_budget"]))
            (own if f.parent.name == largest else seen).add(call)
    probes = sorted(seen - own)
    markers = sum(prefix[cut] for _, _, cut in probes)
    return {
        "distinct_probe_answers": len(probes),
        "answer_marker_tokens": markers,
        "partial_block_tokens": {str(b): sum(p % b for _, p, _ in probes) for b in blocks},
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
    ap.add_argument("--sweep", action="store_true", help="the grid sweep instead: budgets 8..1024 x forcing 0,1,2")
    ap.add_argument("--today", default=None, help="with --sweep: also run the sweep of this checkout (today's code)")
    a = ap.parse_args()
    from m1_harness.devmodels import smollm2

    work = B.WORK / "streaming"
    work.mkdir(parents=True, exist_ok=True)
    shipped = smollm2()
    models = {"shipped": shipped, "never-stop": B.never_stop(shipped, B.WORK / "models" / "smollm2-135m-never-stop")}
    if a.sweep:
        return sweep_main(a, shipped, work)
    rows = []
    for name in a.setting or sorted(SETTINGS):
        setting = dict(SETTINGS[name], name=name)
        runs = [(kv, True) for kv in sorted(a.kv or [1, 4])] + ([] if a.no_barrier else [(min(a.kv or [1]), False)])
        for kv, streaming in runs:
            row = run_cli(models[setting["model"]], setting, kv, streaming, a.limit, work)
            print(json.dumps(row), flush=True)
            rows.append(row)
    path = B.RESULTS / "streaming_vllm.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    keys = {(r["setting"], r["kv_cache_gib"], r["streaming"], r["requests"]) for r in rows}
    rows = [
        r for r in old.get("rows", []) if (r["setting"], r["kv_cache_gib"], r["streaming"], r["requests"]) not in keys
    ] + rows
    B.write_result("streaming_vllm", {"rows": rows, **{k: old[k] for k in ("earlier",) if k in old}})


def sweep_main(a, model: Path, work: Path) -> None:
    """The grid through ``m1-harness sweep`` against its largest setting alone (same KV, same model)."""
    budgets, forcings, kv = [8, 16, 32, 64, 128, 256, 512, 1024], [0, 1, 2], (a.kv or [4])[0]
    setting = dict(
        name="sweep-largest", model="shipped", thinking_budget=max(budgets), answer_budget=8, forcing=max(forcings)
    )
    alone = run_cli(model, setting, kv, True, a.limit, work)
    print(json.dumps(alone), flush=True)
    rows = [run_sweep(model, budgets, forcings, kv, a.limit, work, "this", 8)]
    if a.today:
        rows.append(run_sweep(model, budgets, forcings, kv, a.limit, work, a.today, 8))
    else:  # keep the last measured per-setting sweep (the code before issue 16), dated
        path = B.RESULTS / f"sweep_streaming_vllm_kv{kv}.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        rows += [
            dict(r, run_utc=r.get("run_utc", old["utc"]), largest_alone_then=old["largest_alone"])
            for r in old.get("sweeps", [])
            if r["sweep_code"] != "this" and r["requests"] == a.limit
        ]
    for r in rows:
        if "largest_alone_then" in r:  # measured against its own run of the largest setting
            continue
        r["vs_largest_alone"] = {
            "generated_tokens": round(r["generated_tokens"] / alone["generated_tokens"], 3),
            "prefilled_tokens": round(r["prefilled_tokens"] / (alone["context_tokens"] - alone["cached_tokens"]), 3)
            if r["context_tokens"]
            else None,
            "cpu_s": round(r["sweep_cpu_s"] / alone["cli_cpu_s"], 3),
            "wall_s": round(r["sweep_wall_s"] / alone["cli_wall_s"], 3),
        }
        print(json.dumps({k: v for k, v in r.items() if k != "per_setting"}), flush=True)
    alone_prefilled = alone["context_tokens"] - alone["cached_tokens"]
    floor = probe_floor(work / f"sweep-this-kv{kv}-{a.limit}", model, f"budget{max(budgets)}_forcing{max(forcings)}")
    floor["prefilled_floor_vs_largest_alone"] = round(
        (alone_prefilled + floor["answer_marker_tokens"]) / alone_prefilled, 3
    )
    floor["prefilled_at_block_vs_largest_alone"] = {
        b: round((alone_prefilled + floor["answer_marker_tokens"] + n) / alone_prefilled, 3)
        for b, n in floor["partial_block_tokens"].items()
    }
    print(json.dumps(floor), flush=True)
    B.write_result(f"sweep_streaming_vllm_kv{kv}", {"largest_alone": alone, "sweeps": rows, "probe_prefill": floor})


if __name__ == "__main__":
    main()
