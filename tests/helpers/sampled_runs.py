"""A stand-in for lm_eval.simple_evaluate on m1_budget with ``samples=K``: it writes what such a run
writes (lm-eval's results and samples of sample 0; one trace record per sample in the model side's
format: ``sample``, ``sample_seed``, ``text``, ``generated_tokens``, ``answer_tokens``, ``round_tokens``)
from a fixed table of answers, so every maj@k / pass@k / mean@k is known by hand.

The table (gold A, B, C, A; None: an answer with nothing to extract)::

    item 0: A  B  B  A     item 2: -  -  C  D
    item 1: C  B  -  B     item 3: B  B  C  D

Item 0 ties 2-2 at k=4 (A, first in sample order, wins), item 1 ties C-B at k=2 (C wins), item 2 has
no answer in its first two samples and ties C-D at k=4 (C wins). Sample j of item d decodes
``scale * (10 * (j + 1) + d)`` thinking tokens plus 5 answer tokens, ``scale = budget // 512``.
"""

from __future__ import annotations

import hashlib
import json

GOLD = ["A", "B", "C", "A"]
TABLE = [["A", "B", "B", "A"], ["C", "B", None, "B"], [None, None, "C", "D"], ["B", "B", "C", "D"]]
OPTIONS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}
ANSWER_TOKENS = 5


def text_of(doc_id: int, j: int, letter) -> str:
    answer = f"The answer is \\boxed{{{letter}}}." if letter else "??"  # "??": no option shares a character
    return f"<|im_start|>think\nitem {doc_id} sample {j}\n<|im_start|>answer\n{answer}"


def thinking_tokens(budget: int, doc_id: int, j: int) -> int:
    return max(1, budget // 512) * (10 * (j + 1) + doc_id)


def doc(doc_id: int) -> dict:
    return {
        "id": f"q{doc_id}",
        "prompt": "p",
        "question": f"question {doc_id}",
        "letters": list(OPTIONS),
        "choices": list(OPTIONS.values()),
        "answer_idx": GOLD[doc_id],
        "answer": OPTIONS[GOLD[doc_id]],
    }


def trace_record(task, doc_id, j, budget, forcing, seed, letter=None) -> dict:
    think = thinking_tokens(budget, doc_id, j)
    letter = TABLE[doc_id][j % 4] if letter is None else letter
    return {
        "task": task,
        "doc_id": doc_id,
        "sample": j,
        "sample_seed": None if seed is None else 1000 * doc_id + j,
        "requested_thinking_budget": budget,
        "thinking_budget": budget,
        "forcing": forcing,
        "temperature": 0.7,
        "generated_tokens": think,
        "forced_tokens": 0,
        "hit_budget": False,
        "text": text_of(doc_id, j, letter),
        "thinking_tokens": think,
        "answer_tokens": ANSWER_TOKENS,
        "round_tokens": {
            "context_tokens": [100, 100 + think],
            "cached_tokens": [0, 100 + think],
            "generated_tokens": [think, ANSWER_TOKENS],
        },
        "probe_tokens": {"context_tokens": 0, "cached_tokens": 0, "generated_tokens": 0},
    }


class SampledEvaluate:
    """Called as simple_evaluate; ``samples`` (K, up to 4 x the table) comes from model_args."""

    def __init__(self, n=4):
        self.n = n
        self.calls = []

    def __call__(self, *, model, model_args, tasks, limit, log_samples, evaluation_tracker, **kw):
        args = dict(p.split("=", 1) for p in model_args.split(","))
        budget, forcing = int(args["thinking_budget"]), int(args["forcing"])
        k_drawn = int(args.get("samples", 1))
        seed = int(args["seed"]) if "seed" in args else None
        self.calls.append(
            {"budget": budget, "forcing": forcing, "samples": k_drawn, "seed": seed, "gen_kwargs": kw.get("gen_kwargs")}
        )
        evaluation_tracker.general_config_tracker.log_experiment_args(
            model_source=model,
            model_args=model_args,
            system_instruction=None,
            chat_template=None,
            fewshot_as_multiturn=False,
        )
        res, nsamples, samples = {}, {}, {}
        for task in tasks:
            right = [TABLE[d][0] == GOLD[d] for d in range(self.n)]
            res[task] = {"alias": task, "acc,none": sum(right) / self.n, "acc_stderr,none": 0.1}
            nsamples[task] = {"original": 100, "effective": self.n}
            samples[task] = [
                {
                    "doc_id": d,
                    "doc": doc(d),
                    "target": GOLD[d],
                    "arguments": [("prompt", {"until": []})],
                    "resps": [[text_of(d, 0, TABLE[d][0])]],
                    "filtered_resps": [text_of(d, 0, TABLE[d][0])],
                    "filter": "none",
                    "metrics": ["acc"],
                    "doc_hash": hashlib.sha256(str(d).encode()).hexdigest(),
                    "prompt_hash": "p",
                    "target_hash": "t",
                    "acc": float(right[d]),
                }
                for d in range(self.n)
            ]
            with open(args["trace_path"], "a") as fh:
                for d in range(self.n):
                    for j in range(k_drawn):
                        fh.write(json.dumps(trace_record(task, d, j, budget, forcing, seed)) + "\n")
        return {
            "results": res,
            "group_subtasks": {},
            "configs": {t: {"task": t} for t in tasks},
            "versions": {t: 1.0 for t in tasks},
            "n-shot": {t: 0 for t in tasks},
            "higher_is_better": {t: {"acc": True} for t in tasks},
            "n-samples": nsamples,
            "config": {"model": model, "model_args": model_args, "limit": limit, "gen_kwargs": kw.get("gen_kwargs")},
            "samples": samples if log_samples else None,
        }
