"""Seeds for sampled runs: one per sample of each item, one per generate call of that sample.

Why per call and not per run: a run-wide seed makes a sampled trace depend on what else was batched
with it and on call order, so a cut at a smaller budget, a forcing round or a probe's answer is not
what an independent run would write, and the trace cache could serve nothing. Here every call gets
``call_seed(sample_seed, len(context))``: its output is a function of its context (engines sample
each call from its own generator), so the budget loop's replays are exact, as under greedy decoding.

Formula (``derive``: the first 8 bytes of SHA-256 of the JSON list of the parts, big-endian, top bit
cleared: a non-negative 63-bit integer, the same on every platform and Python version):

- sample seed = ``derive(S, task, doc_id, j)`` for seed ``S``, lm-eval's task name and doc id, and
  sample index ``j`` (0..K-1); where lm-eval gives no task or doc id,
  ``derive(S, "prompt", sha256 hex of the prompt ids as JSON, j)``.
- call seed = ``derive(sample_seed, context_length)``.
"""

from __future__ import annotations

import hashlib
import json


def derive(*parts) -> int:
    """A stable non-negative 63-bit integer from JSON-able ``parts``."""
    digest = hashlib.sha256(json.dumps(list(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_seed(seed: int, task: str | None, doc_id: int | None, sample: int, prompt_ids: list[int]) -> int:
    """The seed of sample ``sample`` of one lm-eval request (module docstring)."""
    if task is None or doc_id is None:
        return derive(seed, "prompt", hashlib.sha256(json.dumps(list(prompt_ids)).encode()).hexdigest(), sample)
    return derive(seed, task, doc_id, sample)


def call_seed(sample: int | None, context_length: int) -> int | None:
    """The seed of one generate call of a sample: None when the sample has none (greedy, unseeded)."""
    return None if sample is None else derive(sample, context_length)
