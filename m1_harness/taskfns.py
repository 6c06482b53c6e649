"""Functions the m1 task YAMLs call (``!function m1_harness.taskfns.<name>``).

Prompts live in prompts.py, items in data.py, scoring in scoring.py; this module only adapts them to
lm-eval's task interface.
"""

from __future__ import annotations

import os

import datasets

from m1_harness import data as m1_data
from m1_harness.errors import UserError
from m1_harness.prompts import build_prompt
from m1_harness.scoring import MATCH_MODES, score

MATCH_ENV = "M1_HARNESS_MATCH"
"""Which match of each scoring rule counts: ``last`` (m1's released code, the default) or ``first``
(the paper's text); read by the m1 tasks' scoring and by ``sampled.py`` (maj@k, pass@k)."""
STRICT_ENV = "M1_HARNESS_STRICT"
"""``1``: a *similarity guess* (no rule found an answer, so the option text most like the response was
taken) counts as wrong; ``0`` (the default): it counts as m1's code counts it. Either way the share of
guesses is reported (``guess_share``). Read beside ``M1_HARNESS_MATCH``."""
_STRICT_VALUES = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                  "off": False, "": False}
METHOD_GROUPS = {
    "boxed": "boxed_share",
    "answer_is": "regex_share",
    "letter": "regex_share",
    "option_text": "regex_share",
    "similarity": "guess_share",
    "none": "none_share",
}
SHARE_METRICS = ("boxed_share", "regex_share", "guess_share", "none_share")


class ScoringSettingError(UserError, ValueError):
    """``M1_HARNESS_MATCH`` or ``M1_HARNESS_STRICT`` set to a value scoring does not know."""


def scoring_rules() -> dict:
    """``match`` and ``strict`` for ``scoring.score``, from the two environment variables; checked when
    the tasks load (``load_dataset``), so a typo is one sentence before any answer is generated."""
    match = os.environ.get(MATCH_ENV, "last").strip() or "last"
    if match not in MATCH_MODES:
        raise ScoringSettingError(f"{MATCH_ENV}={match!r}: use 'last' (m1's released code, the default) or 'first' "
                                  "(the paper's text)")
    strict = os.environ.get(STRICT_ENV, "").strip().lower()
    if strict not in _STRICT_VALUES:
        raise ScoringSettingError(f"{STRICT_ENV}={strict!r}: use 1 (a similarity guess counts as wrong) or 0 "
                                  "(it counts as m1's code counts it, the default)")
    return {"match": match, "strict": _STRICT_VALUES[strict]}


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
    scoring_rules()  # a bad scoring setting fails now, not after every answer was generated
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
    options = dict(zip(doc["letters"], doc["choices"]))
    verdict = score(results[0], options, doc["answer_idx"], **scoring_rules())
    out = {"acc": int(verdict.correct)}
    out.update({name: 0 for name in SHARE_METRICS})
    out[METHOD_GROUPS[verdict.method]] = 1
    out["bad_items_skipped"] = doc.get("bad_items_skipped", 0)
    return out


def per_file(counts: list[int]) -> int:
    """Aggregation of a count every doc of a task carries once for the whole file (all equal)."""
    return max(counts, default=0)
