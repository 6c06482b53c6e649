"""Functions the m1 task YAMLs call (``!function m1_harness.taskfns.<name>``).

Prompts live in prompts.py, items in data.py, scoring in scoring.py; this module only adapts them to
lm-eval's task interface.
"""

from __future__ import annotations

import os

import datasets

from m1_harness import data as m1_data
from m1_harness.prompts import build_prompt

MATCH_ENV = "M1_HARNESS_MATCH"  # "last" (m1's released code, default) or "first" (the paper's text)
METHOD_GROUPS = {
    "boxed": "boxed_share",
    "answer_is": "regex_share",
    "letter": "regex_share",
    "option_text": "regex_share",
    "similarity": "guess_share",
    "none": "none_share",
}
SHARE_METRICS = ("boxed_share", "regex_share", "guess_share", "none_share")


def load_dataset(
    benchmark: str, data: str | None = None, prompt: str = "m1", source: str | None = None,
    bad_items: str = "error", **_ignored
) -> datasets.DatasetDict:
    """lm-eval ``custom_dataset``: validated items with their prompt, as a one-split DatasetDict.

    ``benchmark`` comes from the YAML's dataset_kwargs; ``data``, ``prompt`` and ``bad_items`` from
    task metadata (``--metadata '{"prompt": "cot", "data": "/path", "bad_items": "skip"}'``); ``source``
    is the file a plugin registered for its benchmark (``data`` still overrides it). Options are
    stored as two parallel lists because Arrow would pad per-item option dicts to a common set of
    letters. Every row carries the count of items left out, which the ``bad_items_skipped`` metric
    puts in the results.
    """
    items = m1_data.load_items(benchmark, data, source, bad_items=bad_items)
    rows = [
        {
            "id": str(item["id"]),
            "prompt": build_prompt(item["question"], item["options"], prompt),
            "question": item["question"],
            "letters": list(item["options"]),
            "choices": list(item["options"].values()),
            "answer_idx": item["answer_idx"],
            "answer": item["answer"],
            "bad_items_skipped": len(items.skipped),
        }
        for item in items
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_results(doc: dict, results: list[str]) -> dict:
    """``acc`` under m1's rules plus which rule decided, so guessed accuracy is visible."""
    from m1_harness.scoring import score

    options = dict(zip(doc["letters"], doc["choices"]))
    verdict = score(results[0], options, doc["answer_idx"], match=os.environ.get(MATCH_ENV, "last"))
    out = {"acc": int(verdict.correct)}
    out.update({name: 0 for name in SHARE_METRICS})
    out[METHOD_GROUPS[verdict.method]] = 1
    out["bad_items_skipped"] = doc.get("bad_items_skipped", 0)
    return out


def per_file(counts: list[int]) -> int:
    """Aggregation of a count every doc of a task carries once for the whole file (all equal)."""
    return max(counts, default=0)
