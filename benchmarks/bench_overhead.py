"""(a) Overhead of ``m1_budget`` (forcing=0) against lm-eval's own model on the same requests.

    python benchmarks/bench_overhead.py --engine hf          # main venv: m1_budget(engine=hf) vs lm-eval `hf`
    .venv-vllm/bin/python benchmarks/bench_overhead.py --engine vllm   # m1_budget(engine=vllm) vs lm-eval `vllm`

Both systems answer the same ``medqa`` requests (``--limit``) through ``lm_eval.simple_evaluate`` with
a never-stop model (see _m1bench.py), so each request yields exactly ``thinking + answer`` tokens
from m1_budget (thinking cut by the budget, then the answer phase) and exactly ``max_gen_toks =
thinking + answer`` tokens from the baseline: the same number of tokens on the same requests, which
the script checks from what each engine returned. Reported: generation-only CPU seconds (inside
``generate_until``, this process plus the model's own vLLM processes; model load excluded) and wall
seconds, medians over alternating repeats, and the ratio m1_budget / baseline on CPU seconds
(target <= 1.10; the wall-time ratio is reported beside it, noisier on a shared machine). Target intent: the budget loop, tokenisation, trace records
and the second (answer) prefill must cost little next to generating the tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _m1bench as B  # noqa: E402

# Per model: (requests, thinking budget, answer budget), sized for about a minute per model here.
SIZES = {"tiny": (8, 128, 32), "smollm2": (4, 32, 16)}


def count_baseline_tokens(lm, engine: str):
    """Wrap lm-eval's ``_model_generate`` to count the tokens it really generated."""
    box = {"tokens": 0}
    inner = lm._model_generate
    if engine == "hf":

        def gen(context, max_length, stop, **kw):
            out = inner(context, max_length, stop, **kw)
            box["tokens"] += int((out.shape[1] - context.shape[1]) * out.shape[0])
            return out
    else:

        def gen(*a, **kw):
            out = inner(*a, **kw)
            if kw.get("generate") or (len(a) > 1 and a[1]):
                box["tokens"] += sum(len(o.outputs[0].token_ids) for o in out)
            return out

    lm._model_generate = gen
    return box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["hf", "vllm"], required=True)
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--task", default="medqa")
    ap.add_argument(
        "--size",
        nargs=3,
        type=int,
        metavar=("REQUESTS", "THINKING", "ANSWER"),
        help="override the per-model sizes below",
    )
    args = ap.parse_args()
    if args.engine == "hf":
        B.single_thread()
    if args.engine == "vllm":
        B.shim_lm_eval_vllm()

    rows = []
    for name, path in B.models(args.models).items():
        limit, think, answer = args.size or SIZES[name]
        work = B.WORK / "overhead" / f"{args.engine}-{name}"
        work.mkdir(parents=True, exist_ok=True)
        m1_args = dict(
            pretrained=path,
            engine=args.engine,
            thinking_budget=think,
            forcing=0,
            answer_budget=answer,
            dtype="float32",
            cache="off",
            trace_path=work / "traces.jsonl",
        )
        if args.engine == "hf":
            m1_args.update(batch_size=8, device="cpu")
            base_name, base_args = "hf", dict(pretrained=path, dtype="float32", batch_size=8, device="cpu")
        else:
            m1_args.update(enforce_eager=True, max_model_len=2048)
            base_name, base_args = (
                "vllm",
                dict(
                    pretrained=path,
                    dtype="float32",
                    batch_size="auto",
                    enforce_eager=True,
                    max_model_len=2048,
                    enable_prefix_caching=True,
                    block_size=32,
                ),
            )  # what VLLMEngine uses on CPU: same kernels
        print(f"== {name}: building m1_budget and lm-eval {base_name}", flush=True)
        m1, m1_pids = B.build_with_pids("m1_budget", m1_args)
        base, base_pids = B.build_with_pids(base_name, base_args)
        m1_timer, base_timer = B.Timed(m1, m1_pids), B.Timed(base, base_pids)
        idle = {"m1_budget": B.idle_cpu_per_s(m1_pids), base_name: B.idle_cpu_per_s(base_pids)} if m1_pids else {}
        base_count = count_baseline_tokens(base, args.engine)
        base_gen = {"max_gen_toks": think + answer}
        times = {"m1_budget": [], base_name: []}
        cpus = {"m1_budget": [], base_name: []}
        walls = {"m1_budget": [], base_name: []}
        m1_tokens, base_tokens = [], []
        for rep in range(args.repeats + 1):  # repeat 0 warms both up and is not counted
            gen_tokens = 0
            for system in B.turns(rep, (base_name, "m1_budget")):
                if system == base_name:
                    base_count["tokens"] = 0
                    wall = B.timed_evaluate(base_timer, base, args.task, limit, base_gen, apply_chat_template=True)
                    if rep:
                        times[base_name].append(base_timer.seconds)
                        cpus[base_name].append(base_timer.cpu)
                        walls[base_name].append(wall)
                        base_tokens.append(base_count["tokens"])
                else:
                    wall = B.timed_evaluate(m1_timer, m1, args.task, limit)
                    gen_tokens = sum(r["generated_tokens"] + r["answer_tokens"] for r in m1.traces)
                    if rep:
                        times["m1_budget"].append(m1_timer.seconds)
                        cpus["m1_budget"].append(m1_timer.cpu)
                        walls["m1_budget"].append(wall)
                        m1_tokens.append(gen_tokens)
            print(
                f"   rep {rep}: {base_name} {base_timer.seconds:.2f}s wall {base_timer.cpu:.2f}s cpu "
                f"({base_count['tokens']} tok), m1_budget {m1_timer.seconds:.2f}s wall {m1_timer.cpu:.2f}s cpu "
                f"({gen_tokens} tok)",
                flush=True,
            )
        expected = limit * (think + answer)
        med_m1, med_base = B.median(times["m1_budget"]), B.median(times[base_name])
        cpu_m1, cpu_base = B.median(cpus["m1_budget"]), B.median(cpus[base_name])
        row = {
            "model": name,
            "engine": args.engine,
            "baseline": f"lm-eval {base_name}",
            "requests": limit,
            "thinking_budget": think,
            "answer_budget": answer,
            "expected_tokens": expected,
            "m1_budget_tokens": m1_tokens,
            "baseline_tokens": base_tokens,
            "same_tokens": all(t == expected for t in m1_tokens + base_tokens),
            "m1_budget_seconds": times["m1_budget"],
            "baseline_seconds": times[base_name],
            "m1_budget_wall_seconds": walls["m1_budget"],
            "baseline_wall_seconds": walls[base_name],
            "m1_budget_median_s": round(med_m1, 3),
            "baseline_median_s": round(med_base, 3),
            "m1_budget_tokens_per_s": round(expected / med_m1, 1),
            "baseline_tokens_per_s": round(expected / med_base, 1),
            "m1_budget_cpu_seconds": cpus["m1_budget"],
            "baseline_cpu_seconds": cpus[base_name],
            "m1_budget_median_cpu_s": round(cpu_m1, 3),
            "baseline_median_cpu_s": round(cpu_base, 3),
            "idle_engine_cpu_per_s": idle,
            # vLLM's KV cache per engine (GiB, VLLM_CPU_KVCACHE_SPACE; rows are keyed by it too). Both
            # systems at 1 and 4 GiB in one run: bench_kv_pressure.py
            "kv_cache_gib": float(os.environ["VLLM_CPU_KVCACHE_SPACE"]) if args.engine == "vllm" else None,
            "ratio": round(cpu_m1 / cpu_base, 3),
            "ratio_wall": round(med_m1 / med_base, 3),
            "target": 1.10,
        }
        row["meets_target"] = row["ratio"] <= row["target"]
        rows.append(row)
        B.write_result(f"overhead_{args.engine}", {"rows": rows})  # after each model: partial runs keep results
        print(
            f"   -> ratio m1_budget/{base_name} = {row['ratio']} cpu, {row['ratio_wall']} wall "
            f"(same tokens: {row['same_tokens']})",
            flush=True,
        )
        B.release(m1, base)


if __name__ == "__main__":
    main()
