"""m1_budget on the scripted streaming engine: the real lm-eval model (requests in, trace records out)
with its tokens from a script, so trace files can be pinned exactly and fast. Also a script, for the
tests that need real processes (two runs sharing one trace file, a file-size limit):

    python scripted_m1.py PRETRAINED TRACE_PATH N [--delay S] [--ready FILE --go FILE] [--fsize BYTES]

prints ``ok <records>`` or, on a user error, ``error: <its sentence>`` (exit 2).
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
import time
from pathlib import Path

from lm_eval.api.instance import Instance

from m1_harness.errors import UserError
from m1_harness.thinking.engines.scripted import StreamingScriptedEngine
from m1_harness.thinking.lm import M1BudgetLM


class PacedStreaming(StreamingScriptedEngine):
    """The scripted streaming engine, ``delay`` seconds per poll (so two runs interleave), any decoding."""

    def __init__(self, delay: float = 0.0):
        super().__init__({})
        self.delay = delay

    def set_sampling(self, temperature: float = 0.0, top_p: float = 1.0) -> None:
        """The script is the same under any decoding."""

    def poll(self):
        time.sleep(self.delay)
        return super().poll()


def scripted_lm(pretrained: str, trace_path: Path, delay: float = 0.0, **args) -> M1BudgetLM:
    """m1_budget loaded on ``pretrained`` (argument checks, chat template off), then driving the script."""
    lm = M1BudgetLM(
        **{
            "pretrained": pretrained,
            "engine": "hf",
            "dtype": "float32",
            "cache": "off",
            "trace_path": str(trace_path),
            "thinking_budget": 12,
            "forcing": 1,
            **args,
        }
    )
    lm.engine = PacedStreaming(delay)
    lm.tokenizer = lm.engine.tokenizer
    return lm


def requests(n: int, docs: list[dict] | None = None, **gen) -> list[Instance]:
    """``n`` medqa requests; their docs (lm-eval's ``Instance.doc``) from ``docs`` or empty."""
    gen = {"until": ["\n\n"], "max_gen_toks": 8, **gen}
    docs = docs or [{} for _ in range(n)]
    return [
        Instance("generate_until", docs[i], (docs[i].get("prompt", f"Question {i}?"), gen), i, ("medqa", i, 1))
        for i in range(n)
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pretrained")
    ap.add_argument("trace_path", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--ready", type=Path, help="touched once the model is loaded")
    ap.add_argument("--go", type=Path, help="then wait for this file to exist (two runs start together)")
    ap.add_argument("--fsize", type=int, help="RLIMIT_FSIZE for the run (a disk that fills up)")
    a = ap.parse_args()
    lm = scripted_lm(a.pretrained, a.trace_path, a.delay)
    if a.ready:
        a.ready.touch()
    if a.go:
        while not a.go.exists():
            time.sleep(0.01)
    if a.fsize:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (a.fsize, a.fsize))
    try:
        lm.generate_until(requests(a.n), disable_tqdm=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ok {len(lm.traces)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
