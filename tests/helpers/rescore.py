"""An accuracy computed again from the logged samples by scoring.score, independently of lm-eval."""

from __future__ import annotations

import json
from pathlib import Path

from m1_harness.scoring import score


def rescored_accuracy(output_dir: Path, task: str) -> float:
    """The task's accuracy computed again from the logged traces by scoring.score, independently of lm-eval."""
    (samples,) = output_dir.rglob(f"samples_{task}_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    right = [
        score(r["resps"][0][0], dict(zip(r["doc"]["letters"], r["doc"]["choices"])), r["doc"]["answer_idx"]).correct
        for r in rows
    ]
    return sum(right) / len(right)
