"""Prepared GPU check (issue 16): what one prefilled token costs against one decode step on a GPU.

The streaming benchmarks count tokens exactly on a CPU (context sent, taken from the prefix cache,
generated); this constant turns those counts into GPU time: a run's GPU seconds are about
``prefilled_tokens * prefill_s_per_token + decode_steps * decode_s_per_step(batch)``. Run it when the
``device`` tool lends a machine (torch and transformers only there: no vLLM, no downloads); never
from tests. One call, about 3-5 minutes on an H200::

    PYTHONPATH=. PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json

What it does:
1. Builds a randomly initialised Qwen2 of a real 7B shape (Qwen2.5-7B: 28 layers, hidden 3584,
   28 query / 4 KV heads, MLP 18944, vocab 152064) in bfloat16 on the GPU (random weights: the
   cost of a token does not depend on their values).
2. Prefill: forward passes over fresh prompts of 1x4096, 4x1024 and 16x512 ids; seconds per id.
3. Decode: one-token steps for batches of 1, 16, 64 and 128 rows over a KV cache of 1024 ids
   (prefilled first, not timed); seconds per step, and per generated id.
4. The ratio the issue asks for: one prefilled id / one decode step, per decode batch.
5. The transformers engine's CUDA path: ``m1_budget``'s budget loop (two forcing rounds, an answer) on
   the tiny Qwen2 of ``devmodels`` with ``HFEngine(device="cuda")`` in float32 and in bfloat16, behind
   a trace cache, with sweep probes (24, 1) and (48, 0); then the probe setting (24, 1) again from
   that cache, which must be a pure replay (``replay_misses`` 0). Against the same on the CPU in
   float32: traces compared token for token (reported, not asserted: GPU kernels and bf16 may round
   differently), with the prefix cache's counts, probe costs and cache hits.

Results go to ``benchmarks/results/gpu_check.json`` unless ``--out`` says otherwise.

``--small`` runs the same code on a tiny shape (and on the CPU when no GPU is present) to check the
script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE_7B = dict(
    num_hidden_layers=28,
    hidden_size=3584,
    num_attention_heads=28,
    num_key_value_heads=4,
    intermediate_size=18944,
    vocab_size=152064,
    max_position_embeddings=32768,
    rope_theta=1e6,
)
SHAPE_SMALL = dict(
    num_hidden_layers=2,
    hidden_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=256,
    vocab_size=1000,
    max_position_embeddings=8192,
)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def build(shape: dict, device, dtype):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**shape, tie_word_embeddings=False, torch_dtype=dtype)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    return model


def measure(model, device, prefill_shapes, decode_batches, kv_len: int, repeats: int) -> dict:
    import torch
    from transformers import DynamicCache

    vocab = model.config.vocab_size
    out = {"prefill": [], "decode": []}
    with torch.inference_mode():
        for b, n in prefill_shapes:
            ids = torch.randint(0, vocab, (b, n), device=device)
            s = timed(lambda ids=ids: model(input_ids=ids, use_cache=False, logits_to_keep=1), device, repeats)
            out["prefill"].append({"batch": b, "ids": n, "seconds": s, "s_per_token": s / (b * n)})
        for b in decode_batches:
            ids = torch.randint(0, vocab, (b, kv_len), device=device)
            cache = DynamicCache()
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            step_ids = torch.randint(0, vocab, (b, 1), device=device)

            def step(step_ids=step_ids, cache=cache):
                model(input_ids=step_ids, past_key_values=cache, use_cache=True)
                cache.crop(-1)  # drop the step again: every timed step sees the same KV length

            s = timed(step, device, repeats)
            out["decode"].append({"batch": b, "kv_len": kv_len, "s_per_step": s, "s_per_token": s / b})
            del cache
            if device.type == "cuda":
                torch.cuda.empty_cache()
    prefill = min(p["s_per_token"] for p in out["prefill"])  # the best-utilised shape
    out["prefill_s_per_token"] = prefill
    out["prefill_token_vs_decode_step"] = {str(d["batch"]): prefill / d["s_per_step"] for d in out["decode"]}
    return out


# The sweep the engine check runs: its own setting, and probes that must be cuts of it (budget.py)
BUDGET, FORCING, ANSWER = 48, 2, 16
PROBES = [(24, 1), (48, 0)]
USERS = [
    "The patient presents with fever, cough and shortness of breath.",
    "Which of the following is the most likely diagnosis?",
    "Myocardial infarction",
]


def prompts_and_markers(path: Path):
    """The chat prompts, and m1's markers with a thinking end the random tiny model writes early (its
    most frequent single-token id in a greedy CPU run), so the budget loop really forces: with m1's
    own end marker a random model never stops and every trace ends at the budget, unforced."""
    from collections import Counter

    from m1_harness.thinking.engines.base import GenRequest
    from m1_harness.thinking.engines.hf import HFEngine
    from m1_harness.thinking.markers import PRESETS

    eng = HFEngine(str(path), dtype="float32", device="cpu", batch_size=4, progress=False)
    tok = eng.tokenizer
    prompts = [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": u}], tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
        )
        for u in USERS
    ]
    start = tok.encode(PRESETS["m1"].think_start, add_special_tokens=False)
    outs = eng.generate([GenRequest(p + start, max_tokens=BUDGET) for p in prompts])
    counts = Counter(i for o in outs for i in o.token_ids[: BUDGET // 2] if i not in tok.all_special_ids)
    for i, _ in counts.most_common():
        text = tok.decode([i])
        if tok.encode(text, add_special_tokens=False) == [i]:
            return prompts, PRESETS["m1"].with_overrides(think_end=(text,))
    return prompts, PRESETS["m1"]


def engine_run(path: Path, prompts, markers, where: str, dtype: str, cache_dir: Path) -> dict:
    """m1_budget's loop on the transformers engine at (device, dtype): forcing, sweep probes behind a
    trace cache, then a replay of one probe setting from that cache (which must need no engine call)."""
    from m1_harness.thinking.budget import BudgetForcer
    from m1_harness.thinking.engines.hf import HFEngine
    from m1_harness.thinking.request import BudgetRequest
    from m1_harness.thinking.tracecache import CachingEngine, TraceCache

    eng = HFEngine(str(path), dtype=dtype, device=where, batch_size=4, progress=False)
    cache = TraceCache(cache_dir / f"{where}-{dtype}.sqlite", f"tiny-qwen2-{where}-{dtype}")

    def run(budget: int, forcing: int, probes=(), eng=eng):
        reqs = [BudgetRequest(p, thinking_budget=budget, forcing=forcing, answer_budget=ANSWER) for p in prompts]
        t0 = time.perf_counter()
        traces = BudgetForcer(CachingEngine(eng, cache), markers).run(reqs, probes=probes)
        return traces, time.perf_counter() - t0

    traces, seconds = run(BUDGET, FORCING, PROBES)
    hits, misses = cache.hits, cache.misses
    replay, replay_s = run(*PROBES[0])
    out = {
        "device": where,
        "dtype": dtype,
        "seconds": seconds,
        "texts": [t.text for t in traces],
        "forcing_rounds": [t.forcing_rounds for t in traces],
        "round_tokens": [t.round_tokens for t in traces],
        "probe_tokens": [t.probe_tokens for t in traces],
        "cache_hits": hits,
        "cache_misses": misses,
        "replay_setting": list(PROBES[0]),
        "replay_seconds": replay_s,
        "replay_hits": cache.hits - hits,
        "replay_misses": cache.misses - misses,
        "replay_texts": [t.text for t in replay],
    }
    cache.close()
    del eng
    return out


def engine_check(device) -> dict:
    """The transformers engine's path on ``device`` in float32 and bfloat16 against the CPU in float32,
    on the tiny Qwen2: forcing, probes, the trace cache. Agreement is reported, not asserted (GPU
    kernels and bf16 round differently)."""
    from m1_harness.devmodels import tiny_qwen2

    tmp = Path(tempfile.mkdtemp(prefix="m1-gpu-check-"))
    path = tiny_qwen2(tmp / "tiny")
    settings = [("cpu", "float32")] + (
        [(device.type, "float32"), (device.type, "bfloat16")] if device.type == "cuda" else [("cpu", "bfloat16")]
    )
    prompts, markers = prompts_and_markers(path)
    runs = [engine_run(path, prompts, markers, where, dtype, tmp / "caches") for where, dtype in settings]
    ref = runs[0]
    for r in runs[1:]:
        r["same_texts_as_cpu_float32"] = r["texts"] == ref["texts"]
    for r in runs:
        r["replay_equals_probe_cut"] = r["replay_misses"] == 0  # the replay needed no engine call
    return {
        "device": device.type,
        "probes": PROBES,
        "setting": [BUDGET, FORCING, ANSWER],
        "think_end": list(markers.think_end),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", default=None, help="default: benchmarks/results/gpu_check.json (gpu_check_small.json with --small)"
    )
    ap.add_argument("--small", action="store_true", help="tiny shape, to check the script (numbers mean nothing)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    results = Path(__file__).resolve().parent / "results"
    a.out = a.out or str(results / ("gpu_check_small.json" if a.small else "gpu_check.json"))
    import torch
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not a.small:
        raise SystemExit("gpu_check: no CUDA device; run it on a lent GPU machine, or with --small to check the script")
    shape = SHAPE_SMALL if a.small else SHAPE_7B
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    report = {
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "small": a.small,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "dtype": str(dtype),
        "shape": shape,
    }
    t0 = time.perf_counter()
    model = build(shape, device, dtype)
    report["params"] = sum(p.numel() for p in model.parameters())
    report["build_s"] = time.perf_counter() - t0
    prefill_shapes = [(1, 4096), (4, 1024), (16, 512)] if not a.small else [(1, 256), (4, 64)]
    decode_batches = [1, 16, 64, 128] if not a.small else [1, 8]
    report.update(measure(model, device, prefill_shapes, decode_batches, 1024 if not a.small else 128, a.repeats))
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    report["engine"] = engine_check(device)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("gpu", "params", "prefill_s_per_token", "prefill_token_vs_decode_step")}))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
