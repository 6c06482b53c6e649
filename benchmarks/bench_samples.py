"""A budgets x samples grid of seeded sampled runs: one pass of the largest setting against independent runs.

    python benchmarks/bench_samples.py --engine hf
    .venv-vllm/bin/python benchmarks/bench_samples.py --engine vllm

Same ``medqa`` requests, ``m1_budget`` with forcing=0, temperature 0.8, top_p 0.95, seed 42, on the
never-stop tiny model (_m1bench.py: every budget binds). Measured in one process:
- independent: every (budget, samples) setting of the grid run with ``cache=off``;
- grid: the largest budget with the most samples, with the other budgets as in-flight probes, into a
  fresh trace cache (``cache=on``), then every other setting from that cache. A sample's seed does
  not depend on K (docs/sampling.md), so the samples of a smaller K are the first K of the largest.
Primary measure: engine work as exact token counts (``generated_tokens``, ``context_tokens``,
``cached_tokens`` from m1_budget's summary); CPU and wall seconds beside. Checked: every grid
response and trace text equals the independent run's of the same setting.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _m1bench as B  # noqa: E402

COUNTS = ("generated_tokens", "context_tokens", "cached_tokens")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["hf", "vllm"], required=True)
    ap.add_argument("--model", default="tiny", choices=["tiny", "smollm2"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[16, 32, 64])
    ap.add_argument("--samples", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--answer_budget", type=int, default=16)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top_p", type=float, default=0.95)
    ap.add_argument("--task", default="medqa")
    args = ap.parse_args()
    if args.engine == "hf":
        B.single_thread()
    budgets, ks = sorted(args.budgets, reverse=True), sorted(args.samples, reverse=True)
    gen = {"temperature": args.temperature, "top_p": args.top_p, "do_sample": True}
    path = B.models([args.model])[args.model]
    work = B.WORK / "samples" / f"{args.engine}-{args.model}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    common = dict(
        pretrained=path,
        engine=args.engine,
        forcing=0,
        answer_budget=args.answer_budget,
        seed=42,
        dtype="float32",
        trace_path=work / "traces.jsonl",
    )
    common.update(
        dict(batch_size=8, device="cpu") if args.engine == "hf" else dict(enforce_eager=True, max_model_len=2048)
    )
    indep, i_pids = B.build_with_pids("m1_budget", dict(common, cache="off"))
    grid, g_pids = B.build_with_pids("m1_budget", dict(common, cache="on", cache_dir=work / "cache"))
    timers = {"independent": B.Timed(indep, i_pids), "grid": B.Timed(grid, g_pids)}
    for lm in (indep, grid):
        B.warm_up(lm.engine)
    runs = {"independent": {}, "grid": {}}
    texts = {"independent": {}, "grid": {}}
    for system, lm in (("grid", grid), ("independent", indep)):
        for n, (b, k) in enumerate((b, k) for b in budgets for k in ks):  # the largest setting first
            probes = [(x, 0) for x in budgets if x != b] if system == "grid" and n == 0 else None
            lm.reconfigure(thinking_budget=b, samples=k, probes=probes)
            timer = timers[system]
            hits0 = grid._cache.hits if system == "grid" else 0
            B.timed_evaluate(timer, lm, args.task, args.limit, gen)
            summary = lm.summary
            runs[system][f"{b}x{k}"] = {
                **{c: summary[c] for c in COUNTS},
                "cpu_s": round(timer.cpu, 3),
                "wall_s": round(timer.seconds, 3),
                "mean_thinking_tokens": summary["mean_thinking_tokens"],
                **({"cache_hits": grid._cache.hits - hits0} if system == "grid" else {}),
            }
            texts[system][(b, k)] = (list(timer.responses), [r["text"] for r in lm.traces])
            print(f"{system} budget {b} samples {k}: {runs[system][f'{b}x{k}']}", flush=True)
    total = {s: {c: sum(r[c] for r in runs[s].values()) for c in (*COUNTS, "cpu_s", "wall_s")} for s in runs}
    largest = runs["independent"][f"{budgets[0]}x{ks[0]}"]
    row = {
        "model": args.model,
        "engine": args.engine,
        "requests": args.limit,
        "budgets": budgets,
        "samples": ks,
        "answer_budget": args.answer_budget,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": 42,
        "runs": runs,
        "totals": total,
        "grid_generated_over_independent": round(
            total["grid"]["generated_tokens"] / total["independent"]["generated_tokens"], 3
        ),
        "grid_generated_over_largest_run": round(total["grid"]["generated_tokens"] / largest["generated_tokens"], 3),
        "grid_equals_independent": all(texts["grid"][s] == texts["independent"][s] for s in texts["grid"]),
        "environment": B.environment(),
    }
    B.write_result(f"samples_grid_{args.engine}", {"rows": [row]})
    print(
        f"-> generated tokens: grid {total['grid']['generated_tokens']}, independent "
        f"{total['independent']['generated_tokens']} ({row['grid_generated_over_independent']}x); largest run "
        f"{largest['generated_tokens']}; identical: {row['grid_equals_independent']}",
        flush=True,
    )
    B.release(indep, grid)


if __name__ == "__main__":
    main()
