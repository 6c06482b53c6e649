"""(c) Generation throughput (tokens/s) at batch 1 and batch 8, per engine.

    python benchmarks/bench_throughput.py --engine hf
    .venv-vllm/bin/python benchmarks/bench_throughput.py --engine vllm

Engine level (``HFEngine`` / ``VLLMEngine.generate``, what m1_budget drives): 8 ``medqa`` prompts
(chat template + think marker), ``--new_tokens`` greedy tokens each on a never-stop model, so every
request generates exactly that many. Batch 1: the 8 requests one ``generate`` call at a time (the
HF engine also with ``batch_size=1``). Batch 8: one call with all 8. Tokens/s = generated tokens /
wall seconds (prefill included), median of ``--repeats`` alternating runs; also tokens per CPU
second (this process plus vLLM's processes), which is what a shared machine measures reliably.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _m1bench as B  # noqa: E402


def prompts(tokenizer, n: int) -> list[list[int]]:
    from m1_harness.taskfns import build_prompt

    data = Path(os.environ["M1_HARNESS_DATA"]) / "medqa.jsonl"
    out = []
    with data.open() as f:
        for line in f:
            item = json.loads(line)
            text = (
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": build_prompt(item["question"], item["options"])}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                + "<|im_start|>think\n"
            )
            out.append(list(tokenizer.encode(text, add_special_tokens=False)))
            if len(out) == n:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["hf", "vllm"], required=True)
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    ap.add_argument("--new_tokens", type=int, default=32)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if args.engine == "hf":
        B.single_thread()
    from m1_harness.thinking.engines.base import GenRequest

    rows = []
    for name, path in B.models(args.models).items():
        print(f"== {name} on {args.engine}", flush=True)
        if args.engine == "hf":
            from m1_harness.thinking.engines.hf import HFEngine

            pids = set()
            kw = dict(dtype="float32", device="cpu", progress=False)
            engines = {1: HFEngine(str(path), batch_size=1, **kw), 8: HFEngine(str(path), batch_size=8, **kw)}
        else:
            from m1_harness.thinking.engines.vllm import VLLMEngine

            before = B.child_pids()
            eng = VLLMEngine(
                str(path),
                dtype="float32",
                enforce_eager=True,
                max_model_len=2048,
                progress=False,
                enable_prefix_caching=False,
            )  # no reuse between repeats: measure generation
            engines = {1: eng, 8: eng}
            pids = B.child_pids() - before
        reqs = [GenRequest(p, args.new_tokens) for p in prompts(engines[1].tokenizer, args.requests)]
        B.warm_up(engines[8])
        secs = {1: [], 8: []}
        cpus = {1: [], 8: []}
        tokens = {1: [], 8: []}
        for rep in range(args.repeats):
            for batch in (1, 8):
                eng = engines[batch]
                t0, c0 = time.perf_counter(), B.cpu_seconds(pids)
                if batch == 1:
                    res = [r for q in reqs for r in B.forget_prefixes(eng).generate([q])]
                else:
                    res = B.forget_prefixes(eng).generate(reqs)
                secs[batch].append(time.perf_counter() - t0)
                cpus[batch].append(B.cpu_seconds(pids) - c0)
                tokens[batch].append(sum(len(r.token_ids) for r in res))
                print(
                    f"   rep {rep} batch {batch}: {tokens[batch][-1]} tokens in {secs[batch][-1]:.2f}s wall, "
                    f"{cpus[batch][-1]:.2f}s cpu",
                    flush=True,
                )
        row = {
            "model": name,
            "engine": args.engine,
            "requests": len(reqs),
            "new_tokens": args.new_tokens,
            "prompt_tokens_mean": round(sum(len(q.prompt_ids) for q in reqs) / len(reqs), 1),
            "seconds": secs,
            "cpu_seconds": cpus,
            "tokens": tokens,
            "exact_tokens": all(t == len(reqs) * args.new_tokens for v in tokens.values() for t in v),
        }
        for batch in (1, 8):
            row[f"tokens_per_s_batch{batch}"] = round(len(reqs) * args.new_tokens / B.median(secs[batch]), 1)
            row[f"tokens_per_cpu_s_batch{batch}"] = round(len(reqs) * args.new_tokens / B.median(cpus[batch]), 1)
        rows.append(row)
        B.write_result(f"throughput_{args.engine}", {"rows": rows})  # after each model: partial runs keep results
        print(
            f"   -> batch 1: {row['tokens_per_s_batch1']} tok/s, batch 8: {row['tokens_per_s_batch8']} tok/s",
            flush=True,
        )
        if args.engine == "vllm":
            core = engines[8].llm.llm_engine.engine_core
            core.shutdown()
        del engines


if __name__ == "__main__":
    main()
