"""(b) A 4-budget sweep through the trace cache against 4 independent runs.

    python benchmarks/bench_sweep.py --engine hf
    .venv-vllm/bin/python benchmarks/bench_sweep.py --engine vllm

Same ``medqa`` requests, ``m1_budget`` with forcing=0 and a never-stop model (every budget binds,
so every budget really needs its own thinking length). Measured in one process:
- independent: budgets 64, 128, 256, 512 each run with ``cache=off``;
- sweep: the same budgets, largest first, through one fresh trace cache (``cache=on``): the 512 run
  generates, the smaller ones cut its thinking and run only their answer phase.
Runs are interleaved (independent b, sweep b, for b = 512 ... 64) and repeated with an emptied
cache; medians per budget of generation-only CPU seconds (this process plus the model's vLLM
processes; wall seconds beside). Reported: sweep cost / cost of the single largest independent run (target <= 1.25) and
independent total / largest run. Also checked: every sweep trace equals the independent trace of
the same budget (the cache must not change results).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _m1bench as B  # noqa: E402

SIZES = {"tiny": 8, "smollm2": 2}  # requests per run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["hf", "vllm"], required=True)
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--answer_budget", type=int, default=16)
    ap.add_argument("--task", default="medqa")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if args.engine == "hf":
        B.single_thread()
    budgets = sorted(args.budgets, reverse=True)

    rows = []
    for name, path in B.models(args.models).items():
        limit = SIZES[name]
        work = B.WORK / "sweep" / f"{args.engine}-{name}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        common = dict(
            pretrained=path,
            engine=args.engine,
            forcing=0,
            answer_budget=args.answer_budget,
            dtype="float32",
            trace_path=work / "traces.jsonl",
        )
        common.update(
            dict(batch_size=8, device="cpu") if args.engine == "hf" else dict(enforce_eager=True, max_model_len=2048)
        )
        print(f"== {name}: building m1_budget (cache off) and m1_budget (fresh trace cache)", flush=True)
        indep, i_pids = B.build_with_pids("m1_budget", dict(common, cache="off"))
        sweep, s_pids = B.build_with_pids("m1_budget", dict(common, cache="on", cache_dir=work / "cache"))
        t_indep, t_sweep = B.Timed(indep, i_pids), B.Timed(sweep, s_pids)
        for lm in (indep, sweep):  # warm-up at the engine level, below the trace cache; not counted
            B.warm_up(lm.engine)
        runs_i = {b: [] for b in budgets}
        runs_s = {b: [] for b in budgets}
        wall_i = {b: [] for b in budgets}
        wall_s = {b: [] for b in budgets}
        ind_text, swp_text, hits = {}, {}, {b: [] for b in budgets}
        arms = {
            "independent": (indep, t_indep, runs_i, wall_i, ind_text),
            "sweep": (sweep, t_sweep, runs_s, wall_s, swp_text),
        }
        for rep in range(args.repeats):
            sweep._cache.db.execute("DELETE FROM gen")  # a fresh, empty trace cache per repetition
            sweep._cache.db.commit()
            for b in budgets:  # largest first; independent and sweep runs interleaved, first one alternating
                for system in B.turns(rep, ("independent", "sweep")):
                    lm, timer, cpu, wall, text = arms[system]
                    h0 = sweep._cache.hits
                    B.timed_evaluate(timer, lm, args.task, limit, {"thinking_budget": b})
                    cpu[b].append(timer.cpu)
                    wall[b].append(timer.seconds)
                    text[b] = list(timer.responses)
                    if system == "sweep":
                        hits[b].append(sweep._cache.hits - h0)
                print(
                    f"   rep {rep} budget {b}: independent {t_indep.cpu:.2f}s cpu {t_indep.seconds:.2f}s wall, "
                    f"sweep {t_sweep.cpu:.2f}s cpu {t_sweep.seconds:.2f}s wall "
                    f"({hits[b][-1]} cache hits)",
                    flush=True,
                )
        ind_s = {b: B.median(v) for b, v in runs_i.items()}
        swp_s = {b: B.median(v) for b, v in runs_s.items()}
        largest = ind_s[budgets[0]]
        row = {
            "model": name,
            "engine": args.engine,
            "requests": limit,
            "budgets": budgets,
            "answer_budget": args.answer_budget,
            "independent_runs_cpu_s": runs_i,
            "sweep_runs_cpu_s": runs_s,
            "independent_runs_wall_s": wall_i,
            "sweep_runs_wall_s": wall_s,
            "independent_median_cpu_s": ind_s,
            "sweep_median_cpu_s": swp_s,
            "sweep_cache_hits": hits,
            "largest_run_s": round(largest, 3),
            "sweep_total_s": round(sum(swp_s.values()), 3),
            "independent_total_s": round(sum(ind_s.values()), 3),
            "sweep_over_largest": round(sum(swp_s.values()) / largest, 3),
            "independent_over_largest": round(sum(ind_s.values()) / largest, 3),
            "sweep_over_largest_wall": round(
                sum(B.median(v) for v in wall_s.values()) / B.median(wall_i[budgets[0]]), 3
            ),
            "sweep_equals_independent": all(swp_text[b] == ind_text[b] for b in budgets),
            "target": 1.25,
        }
        row["meets_target"] = row["sweep_over_largest"] <= row["target"]
        rows.append(row)
        B.write_result(f"sweep_{args.engine}", {"rows": rows})  # after each model: partial runs keep results
        print(
            f"   -> sweep/largest = {row['sweep_over_largest']}, independent/largest = "
            f"{row['independent_over_largest']}, identical traces: {row['sweep_equals_independent']}",
            flush=True,
        )
        B.release(indep, sweep)


if __name__ == "__main__":
    main()
