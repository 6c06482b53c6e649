"""Training throughput on this machine: tokens per second and peak memory of ``m1-harness train``.

    .venv/bin/python benchmarks/bench_training.py            # tiny Qwen2 and SmolLM2-135M
    .venv/bin/python benchmarks/bench_training.py --models tiny --steps 5

Each model runs in its own process (peak RSS from ``resource.getrusage`` is per process): the real
``sft`` trainer on the project SFT sample (``M1_HARNESS_TRAIN_DATA``, default ``../shared/data/train``),
fp32, no gradient checkpointing, every sequence cut to ``--max-length`` tokens. Tokens per second
counts the non-padding tokens the trainer saw (prompt and completion) over the time spent in
``trainer.train`` (model loading and data preparation excluded). Writes
``benchmarks/results/training_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "training_cpu.json"


def data_dir() -> Path:
    return Path(os.environ.get("M1_HARNESS_TRAIN_DATA") or REPO.parent / "shared" / "data" / "train")


def one(model_name: str, steps: int, max_length: int, batch: int) -> dict:
    import torch

    from m1_harness import devmodels
    from m1_harness.training import build_config, train

    work = Path(tempfile.mkdtemp(prefix=f"bench-train-{model_name}-"))
    model = devmodels.tiny_qwen2(work / "tiny") if model_name == "tiny" else devmodels.smollm2()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = build_config(
        "m1-7b-1k",
        dict(
            model=str(model),
            data=str(data_dir()),
            output_dir=str(work / "out"),
            bf16=False,
            gradient_checkpointing=False,
            max_length=max_length,
            limit=steps * batch + 8,
            per_device_batch_size=batch,
            global_batch_size=batch,
            max_steps=steps,
            learning_rate=1e-5,
            save_strategy="no",
            seed=0,
            logging_steps=1,
        ),
    )
    start = time.perf_counter()
    out = train(cfg)
    total = time.perf_counter() - start
    summary = json.loads((out / "m1_train_summary.json").read_text())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tokens = summary["tokens_seen"]
    train_s = summary["metrics"]["train_runtime"]
    return {
        "model": model_name,
        "model_path": str(model),
        "steps": summary["global_step"],
        "per_device_batch_size": batch,
        "max_length": max_length,
        "tokens_seen": tokens,
        "train_runtime_s": round(float(train_s), 3),
        "tokens_per_s": round(tokens / float(train_s), 1),
        "seconds_per_step": round(float(train_s) / max(1, summary["global_step"]), 3),
        "wall_incl_load_s": round(total, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "rss_before_train_mib": round(rss_before / 1024, 1),
        "first_loss": summary["first_loss"],
        "last_loss": summary["last_loss"],
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: tiny 20, smollm2 6)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.one:
        steps = args.steps or (20 if args.one == "tiny" else 6)
        print("RESULT " + json.dumps(one(args.one, steps, args.max_length, args.batch)))
        return 0
    if not data_dir().exists():
        print(f"training sample not found at {data_dir()}: set M1_HARNESS_TRAIN_DATA", file=sys.stderr)
        return 2
    rows = []
    for name in args.models:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--max-length",
            str(args.max_length),
            "--batch",
            str(args.batch),
        ]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        row = json.loads(line[len("RESULT ") :])
        rows.append(row)
        print(
            f"{name:8s} {row['tokens_per_s']:>9.1f} tokens/s  {row['seconds_per_step']:.2f} s/step  "
            f"peak RSS {row['peak_rss_mib']:.0f} MiB  loss {row['first_loss']:.3f} -> {row['last_loss']:.3f}"
        )
    result = {
        "benchmark": "bench_training",
        "what": "m1-harness sft trainer on the project SFT sample, fp32 on CPU, no gradient checkpointing",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "2 cores shared with other jobs while measured: numbers are a floor, not a spec",
        },
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
