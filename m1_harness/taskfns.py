"""Functions the m1 task YAMLs call (``!function m1_harness.taskfns.<name>``).

Prompts live in prompts.py, items in data.py, scoring in scoring.py; this module only adapts them to
lm-eval's task interface.
"""

from __future__ import annotations

import math
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
_STRICT_VALUES = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
    "": False,
}
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
        raise ScoringSettingError(
            f"{MATCH_ENV}={match!r}: use 'last' (m1's released code, the default) or 'first' (the paper's text)"
        )
    strict = os.environ.get(STRICT_ENV, "").strip().lower()
    if strict not in _STRICT_VALUES:
        raise ScoringSettingError(
            f"{STRICT_ENV}={strict!r}: use 1 (a similarity guess counts as wrong) or 0 "
            "(it counts as m1's code counts it, the default)"
        )
    return {"match": match, "strict": _STRICT_VALUES[strict]}


class BudgetedText(str):
    """A response text that also says whether a thinking budget cut it (``budget_cut``).

    ``m1_budget`` returns these to lm-eval, so the m1 tasks can report the share of requests the budget
    cut and the accuracy among the others. The flag comes from the budget loop (``Trace.hit_budget``:
    the budget, not the model, ended the thinking), not from the text: a cut trace does carry the
    preset's cut text ("Final Answer:", or the family's own), but a model can write that text itself
    (s1 / m1-style models often open their answer with "Final Answer:"), and reading it back would
    count those answers as cut. lm-eval hands the object itself to ``process_results`` (its default
    ``take_first`` filter; the m1 tasks define no other), and ``--use_cache`` pickles it with its flag.
    A plain ``str`` (lm-eval's hf / vllm models: no thinking budget) was not cut.
    """

    budget_cut: bool = False

    def __new__(cls, text: str, budget_cut: bool = False):
        obj = super().__new__(cls, text)
        obj.budget_cut = bool(budget_cut)
        return obj


def load_dataset(
    benchmark: str,
    data: str | None = None,
    prompt: str = "m1",
    source: str | None = None,
    bad_items: str = "error",
    **_ignored,
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
    """``acc`` under m1's rules plus which rule decided, so guessed accuracy is visible, and whether the
    thinking budget cut the response (``budget_cut``), with ``acc_uncut`` as the pair (correct, uncut)
    that ``uncut_accuracy`` sums."""
    options = dict(zip(doc["letters"], doc["choices"]))
    verdict = score(results[0], options, doc["answer_idx"], **scoring_rules())
    out: dict[str, int | tuple[int, int]] = {"acc": int(verdict.correct)}
    out.update({name: 0 for name in SHARE_METRICS})
    out[METHOD_GROUPS[verdict.method]] = 1
    out["bad_items_skipped"] = doc.get("bad_items_skipped", 0)
    cut = int(getattr(results[0], "budget_cut", False))
    out["budget_cut"] = cut
    out["acc_uncut"] = (int(verdict.correct), 1 - cut)
    return out


def uncut_accuracy(pairs: list[tuple[int, int]]) -> float:
    """Accuracy among the requests the budget did not cut: correct-and-uncut over uncut, summed over the
    (correct, uncut) pairs (a mean of per-item values would count cut items as wrong). NaN ("NaN" in
    lm-eval's table) when the budget cut every request: there is no uncut accuracy to report."""
    uncut = sum(u for _, u in pairs)
    return sum(c * u for c, u in pairs) / uncut if uncut else math.nan


def per_file(counts: list[int]) -> int:
    """Aggregation of a count every doc of a task carries once for the whole file (all equal)."""
    return max(counts, default=0)
