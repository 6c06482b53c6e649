"""A budgets x samples grid: one sampled sweep through the trace cache against independent runs.

    python benchmarks/bench_passk.py [--budgets 32 64 128] [--samples 1 2 4] [--limit 8]

``m1-harness sweep --samples 1,2,4 --temperature 0.7`` over the budgets (forcing 0) on the tiny Qwen2
(never-stop variant, ``_m1bench``: every sample thinks to its budget), ``medqa``, transformers engine,
against the same grid run as independent lm-eval runs with ``cache=off``:

- per budget, one run drawing K = max(samples) samples (what the sweep runs per setting);
- per (budget, k), one run drawing k samples (what a tool without the sweep's reuse would run).

Measured: the tokens the engine generated (``generated_tokens`` of every generate call, probes
included) and CPU seconds of each arm, and whether the results agree: every sample's trace text of
the sweep must equal the independent run's (samples are seeded per (seed, task, item, sample), so
the first k of K samples are the k-sample run's), and maj@k / pass@k / mean@k of the sweep's table
must equal those computed from the independent (budget, k) runs (samples that differ are listed).
CPU seconds are this process's (transformers runs in it); on the tiny model they are mostly
lm-eval's own overhead, so tokens are the measure here. Written to
``benchmarks/results/passk_grid_hf.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _m1bench as B  # noqa: E402


def traces(folder: Path) -> dict:
    """(doc_id, sample) -> trace text of one setting folder."""
    out = {}
    for line in (folder / "traces.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[(rec["doc_id"], rec.get("sample") or 0)] = rec["text"]
    return out


def engine_tokens(rows: list[dict]) -> int:
    """Engine-generated tokens of a sweep table (one row per setting and k: count each setting once)."""
    return sum(r["generated_tokens"] for r in rows if r.get("k", 1) == rows[0].get("k", 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", nargs="+", type=int, default=[32, 64, 128])
    ap.add_argument("--samples", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--answer_budget", type=int, default=16)
    ap.add_argument("--task", default="medqa")
    args = ap.parse_args()
    B.single_thread()
    from lm_eval import simple_evaluate

    from m1_harness.analysis import sweep

    sweep._load_lm_eval_extensions()
    (path,) = B.models(["tiny"]).values()
    work = B.WORK / "passk"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["M1_HARNESS_CACHE"] = str(work / "cache")
    base = f"pretrained={path},engine=hf,answer_budget={args.answer_budget},dtype=float32,device=cpu"
    ks, quiet = args.samples, (lambda *a: None)
    common = dict(limit=args.limit, batch_size=8, temperature=args.temperature, seed=0, echo=quiet)

    def independent(**kw):  # lm-eval builds the model per run; one TaskManager for all (indexing is slow)
        return simple_evaluate(**{**kw, "task_manager": B.task_manager()})

    def timed(fn):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        return out, round(time.process_time() - c0, 2), round(time.perf_counter() - t0, 2)

    print(f"== sweep: budgets {args.budgets} x samples {ks}, one run per budget with {ks[-1]} samples", flush=True)
    rows, cpu, wall = timed(
        lambda: sweep.run_sweep(base, [args.task], args.budgets, [0], work / "sweep", samples=ks, **common)
    )
    result = {
        "model": "tiny (never-stop)",
        "engine": "hf",
        "task": args.task,
        "items": args.limit,
        "budgets": args.budgets,
        "samples": ks,
        "temperature": args.temperature,
        "answer_budget": args.answer_budget,
        "sweep": {
            "generated_tokens": engine_tokens(rows),
            "cpu_s": cpu,
            "wall_s": wall,
            "rows": [
                {
                    k: r[k]
                    for k in (
                        "budget",
                        "k",
                        "maj_at_k",
                        "pass_at_k",
                        "mean_at_k",
                        "mean_generated_tokens_per_item",
                        "generated_tokens",
                    )
                }
                for r in rows
            ],
        },
    }
    print(f"   {result['sweep']}", flush=True)
    arms = {
        "per_budget": [(b, ks[-1]) for b in args.budgets],
        "per_budget_and_k": [(b, k) for b in args.budgets for k in ks],
    }
    for arm, grid in arms.items():
        tokens, cpu_total, wall_total, compared, differing, same_metrics = 0, 0.0, 0.0, 0, [], True
        for b, k in grid:
            out = work / arm / f"b{b}_k{k}"
            got, cpu, wall = timed(
                lambda b=b, k=k, out=out: sweep.run_sweep(
                    base + ",cache=off", [args.task], [b], [0], out, samples=[k], evaluate=independent, **common
                )
            )
            tokens += engine_tokens(got)
            cpu_total += cpu
            wall_total += wall
            mine, theirs = traces(out / f"budget{b}_forcing0"), traces(work / "sweep" / f"budget{b}_forcing0")
            compared += len(mine)
            differing += [[b, k, *key] for key, text in mine.items() if theirs.get(key) != text]
            (row,) = [r for r in rows if r["budget"] == b and r["k"] == k]
            same_metrics &= all(
                got[-1][m] == row[m] for m in ("maj_at_k", "mean_at_k", "mean_generated_tokens_per_item")
            )
            print(f"   {arm} budget {b} k {k}: {engine_tokens(got)} tokens, {cpu} s cpu", flush=True)
        result[arm] = {
            "runs": len(grid),
            "generated_tokens": tokens,
            "cpu_s": round(cpu_total, 2),
            "wall_s": round(wall_total, 2),
            "samples_compared": compared,
            "samples_differing_from_sweep": differing,  # [budget, k of the run, doc_id, sample]
            "metrics_equal_sweep": same_metrics,
        }
        result[f"sweep_over_{arm}_tokens"] = round(result["sweep"]["generated_tokens"] / tokens, 3)
        result[f"sweep_over_{arm}_cpu"] = round(result["sweep"]["cpu_s"] / cpu_total, 3)
    B.write_result("passk_grid_hf", result)
    print(json.dumps({k: v for k, v in result.items() if k != "sweep"}, indent=1))


if __name__ == "__main__":
    main()
