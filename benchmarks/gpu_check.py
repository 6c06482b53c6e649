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
5. The transformers engine's CUDA path once: ``m1_budget``'s budget loop (two forcing rounds, an
   answer) on the tiny Qwen2 of ``devmodels`` with ``HFEngine(device="cuda")``, against the same on
   the CPU: the traces must agree token for token (reported, not asserted: GPU kernels may round
   differently), with the prefix cache's counts.

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

SHAPE_7B = dict(num_hidden_layers=28, hidden_size=3584, num_attention_heads=28, num_key_value_heads=4,
                intermediate_size=18944, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6)
SHAPE_SMALL = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=256, vocab_size=1000, max_position_embeddings=8192)


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
            s = timed(lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1), device, repeats)
            out["prefill"].append({"batch": b, "ids": n, "seconds": s, "s_per_token": s / (b * n)})
        for b in decode_batches:
            ids = torch.randint(0, vocab, (b, kv_len), device=device)
            cache = DynamicCache()
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            step_ids = torch.randint(0, vocab, (b, 1), device=device)

            def step():
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


def engine_check(device) -> dict:
    """The transformers engine's path on ``device`` against the CPU, on the tiny Qwen2."""
    from m1_harness.thinking.budget import BudgetForcer
    from m1_harness.thinking.request import BudgetRequest
    from m1_harness.devmodels import tiny_qwen2
    from m1_harness.thinking.engines.hf import HFEngine
    from m1_harness.thinking.markers import PRESETS

    tmp = Path(tempfile.mkdtemp(prefix="m1-gpu-check-"))
    path = tiny_qwen2(tmp / "tiny")
    users = ["The patient presents with fever, cough and shortness of breath.",
             "Which of the following is the most likely diagnosis?", "Myocardial infarction"]
    runs = {}
    for where in dict.fromkeys(["cpu", device.type]):
        eng = HFEngine(str(path), dtype="float32", device=where, batch_size=4, progress=False)
        tok = eng.tokenizer
        reqs = [BudgetRequest(list(tok.apply_chat_template([{"role": "user", "content": u}], tokenize=True,
                                                           add_generation_prompt=True, return_dict=True)["input_ids"]),
                              thinking_budget=48, forcing=2, answer_budget=16) for u in users]
        t0 = time.perf_counter()
        traces = BudgetForcer(eng, PRESETS["m1"]).run(reqs)
        runs[where] = {"seconds": time.perf_counter() - t0, "texts": [t.text for t in traces],
                       "round_tokens": [t.round_tokens for t in traces]}
    gpu = runs[device.type]
    return {"device": device.type, "seconds": gpu["seconds"], "cpu_seconds": runs["cpu"]["seconds"],
            "same_texts_as_cpu": gpu["texts"] == runs["cpu"]["texts"], "round_tokens": gpu["round_tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--small", action="store_true", help="tiny shape, to check the script (numbers mean nothing)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    import torch
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not a.small:
        raise SystemExit("gpu_check: no CUDA device; run it on a lent GPU machine, or with --small to check the script")
    shape = SHAPE_SMALL if a.small else SHAPE_7B
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    report = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "small": a.small,
              "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
              "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None, "dtype": str(dtype), "shape": shape}
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
