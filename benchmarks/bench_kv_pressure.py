"""What a small KV cache costs, m1_budget against lm-eval's own ``vllm`` on the same requests (issue 16).

    .venv-vllm/bin/python benchmarks/bench_kv_pressure.py            # 64 medqa x (256 + 8), KV 1 and 4 GiB

bench_streaming.py measures m1_budget alone through the CLI, one fresh process per KV size. This
script asks the question that measurement leaves open: when the 1 GiB run takes longer than the 4 GiB
one, is that the rounds (a later round recomputing what an earlier one cached) or the engine (at 1
GiB not all 64 traces fit at once, so decoding runs in smaller batches)? It builds four systems in
one process, m1_budget (engine=vllm, streaming, forcing 0) and lm-eval's ``vllm`` model at each KV
size (``VLLM_CPU_KVCACHE_SPACE`` is read by each engine process as it starts), on the never-stop
SmolLM2 (_m1bench.py), so every request yields exactly thinking + answer tokens on every system, in
one generate call for lm-eval (no rounds at all) and two for m1_budget. Runs rotate through the
systems, each from an empty prefix cache (``forget_prefixes``), medians over ``--repeats``; a short
warm-up run per system is not counted. If lm-eval's own 1 GiB / 4 GiB ratio is as large as
m1_budget's, the cost is the engine's, not the rounds'.

Reported per system: generation-only CPU seconds (this process and the system's vLLM processes) and
wall seconds, the tokens each generated (checked equal), and the ratios 1 GiB / 4 GiB per system and
m1_budget / lm-eval per KV size. Results: results/kv_pressure_vllm.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _m1bench as B  # noqa: E402
from bench_overhead import count_baseline_tokens  # noqa: E402


def build(kv: int, path: Path, think: int, answer: int, work: Path) -> dict:
    """m1_budget and lm-eval vllm with ``kv`` GiB of KV cache each: name -> (lm, timer, token counter)."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv)
    common = dict(pretrained=path, dtype="float32", enforce_eager=True, max_model_len=2048)
    m1, m1_pids = B.build_with_pids(
        "m1_budget",
        dict(
            common,
            engine="vllm",
            thinking_budget=think,
            forcing=0,
            answer_budget=answer,
            cache="off",
            trace_path=work / f"traces-kv{kv}.jsonl",
        ),
    )
    base, base_pids = B.build_with_pids(
        "vllm", dict(common, batch_size="auto", enable_prefix_caching=True, block_size=32)
    )  # what VLLMEngine uses on CPU
    return {
        f"m1_budget@{kv}": (m1, B.Timed(m1, m1_pids), None),
        f"vllm@{kv}": (base, B.Timed(base, base_pids), count_baseline_tokens(base, "vllm")),
    }


def run_once(system: str, lm, timer, counter, args, think: int, answer: int) -> tuple[float, float, int]:
    """One timed evaluate of ``system``: (generation wall s, generation CPU s, generated tokens)."""
    if counter is None:
        B.timed_evaluate(timer, lm, args.task, args.limit)
        tokens = sum(r["generated_tokens"] + r["answer_tokens"] for r in lm.traces)  # the last call's records
    else:
        counter["tokens"] = 0
        B.timed_evaluate(timer, lm, args.task, args.limit, {"max_gen_toks": think + answer}, apply_chat_template=True)
        tokens = counter["tokens"]
    return timer.seconds, timer.cpu, tokens


def engine_work(records: list[dict]) -> dict:
    """m1_budget's exact engine work from its trace records: context sent, taken from vLLM's prefix
    cache and generated, over all rounds and over the rounds after the first (the answer round here)."""

    def total(key: str, later: bool = False) -> int:
        return sum(sum(r["round_tokens"][key][1 if later else 0 :]) for r in records)

    return {
        "context_tokens": total("context_tokens"),
        "cached_tokens": total("cached_tokens"),
        "generated_tokens": total("generated_tokens"),
        "later_rounds_context_tokens": total("context_tokens", True),
        "later_rounds_cached_tokens": total("cached_tokens", True),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kv", nargs=2, type=int, default=[1, 4], metavar=("SMALL_GIB", "LARGE_GIB"))
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--size", nargs=2, type=int, default=[256, 8], metavar=("THINKING", "ANSWER"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--task", default="medqa")
    args = ap.parse_args()
    B.shim_lm_eval_vllm()
    think, answer = args.size
    path = B.models(["smollm2"])["smollm2"]
    work = B.WORK / "kv_pressure"
    work.mkdir(parents=True, exist_ok=True)
    systems = {}
    for kv in args.kv:
        print(f"== building m1_budget and lm-eval vllm with {kv} GiB of KV cache", flush=True)
        systems.update(build(kv, path, think, answer, work))
    names = list(systems)
    for name in names:  # warm-up: a few requests each, not counted
        lm, timer, counter = systems[name]
        B.timed_evaluate(
            timer,
            lm,
            args.task,
            4,
            None if counter is None else {"max_gen_toks": think + answer},
            apply_chat_template=counter is not None,
        )
    walls, cpus, tokens = ({n: [] for n in names} for _ in range(3))
    work_of: dict[str, dict] = {}  # m1_budget systems: engine work of their last timed run
    for rep in range(args.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]  # each system first in turn
        for name in order:
            wall, cpu, tok = run_once(name, *systems[name], args, think, answer)
            walls[name].append(round(wall, 2))
            cpus[name].append(round(cpu, 2))
            tokens[name].append(tok)
            if systems[name][2] is None:  # m1_budget: what the engine did, from the run's trace records
                work_of[name] = engine_work(systems[name][0].traces)
            print(f"   rep {rep} {name}: {wall:.1f}s wall {cpu:.1f}s cpu ({tok} tokens)", flush=True)
    wall_m = {n: B.median(v) for n, v in walls.items()}
    cpu_m = {n: B.median(v) for n, v in cpus.items()}
    small, large = args.kv
    expected = args.limit * (think + answer)
    result = {
        "model": "smollm2-never-stop",
        "task": args.task,
        "requests": args.limit,
        "thinking_budget": think,
        "answer_budget": answer,
        "kv_cache_gib": args.kv,
        "repeats": args.repeats,
        "expected_tokens": expected,
        "same_tokens": all(t == expected for v in tokens.values() for t in v),
        "tokens": tokens,
        "wall_s": walls,
        "cpu_s": cpus,
        "m1_budget_engine_work": work_of,
        "median_wall_s": {n: round(v, 2) for n, v in wall_m.items()},
        "median_cpu_s": {n: round(v, 2) for n, v in cpu_m.items()},
        "small_over_large": {
            sys_: {
                "wall": round(wall_m[f"{sys_}@{small}"] / wall_m[f"{sys_}@{large}"], 3),
                "cpu": round(cpu_m[f"{sys_}@{small}"] / cpu_m[f"{sys_}@{large}"], 3),
            }
            for sys_ in ("m1_budget", "vllm")
        },
        "m1_budget_over_vllm": {
            str(kv): {
                "wall": round(wall_m[f"m1_budget@{kv}"] / wall_m[f"vllm@{kv}"], 3),
                "cpu": round(cpu_m[f"m1_budget@{kv}"] / cpu_m[f"vllm@{kv}"], 3),
            }
            for kv in args.kv
        },
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    B.write_result("kv_pressure_vllm", result)
    print(
        f"   {small} GiB / {large} GiB: {result['small_over_large']}; m1_budget / lm-eval vllm: "
        f"{result['m1_budget_over_vllm']} (same tokens: {result['same_tokens']})",
        flush=True,
    )
    B.release(*(lm for lm, _, _ in systems.values()))


if __name__ == "__main__":
    main()
