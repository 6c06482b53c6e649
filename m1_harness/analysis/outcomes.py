"""The join of lm-eval's samples with m1_budget's trace records: one ``Outcome`` per item of each
``Run`` (model, task, setting). ``explain``, ``sampled`` and the viewer all read items through here,
so every join checks the same item identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from m1_harness.errors import UserError
from m1_harness.records import read_records
from m1_harness.scoring import answer_part, extract_choice
from m1_harness.taskfns import METHOD_GROUPS

from .items import item_hash, keyed_by_item, options_of
from .results import display_name, load_results, read_sample_records, sortable, trace_files_near

CLASSES = (
    "always right",
    "always wrong",
    "helped by thinking",
    "hurt by thinking",
    "unstable",
)  # explain and the viewer


class ExplainError(UserError):
    """A bad input to the per-item analysis, with a message saying which and what to do."""


@dataclass
class Outcome:
    """One item at one setting."""

    correct: bool
    letter: str | None
    method: str  # boxed / regex / guess / none; loglikelihood (multiple_choice); "-" when there are no options
    answer: str  # the answer part of the response
    text: str  # the whole response (m1_budget: the trace string)
    thinking_tokens: int | None = None
    hit_budget: bool | None = None
    record: dict | None = field(default=None, repr=False)  # the m1_budget trace record


@dataclass
class Run:
    """One model on one task at one setting."""

    model: str
    task: str
    budget: int | str | None
    forcing: int | None
    source: str
    outcomes: dict = field(default_factory=dict)  # item -> Outcome (see ItemIds)
    docs: dict = field(default_factory=dict)  # item -> (doc, gold)

    @property
    def key(self) -> tuple:
        return (sortable(self.budget), sortable(self.forcing))

    @property
    def label(self) -> str:
        return setting_label(self.budget, self.forcing)


def setting_label(budget, forcing) -> str:
    return "no budget" if budget is None else f"budget {budget}, forcing {forcing}"


def precedes(a: Run, b: Run) -> bool:
    """b thinks at least as much as a on both axes (and differs): the order classes use."""
    if a.budget is None or b.budget is None or a is b:
        return False
    return sortable(a.budget) <= sortable(b.budget) and (a.forcing or 0) <= (b.forcing or 0)


# -- reading ----------------------------------------------------------------------------------------
def loglikelihood_choice(rec: dict) -> tuple[int, float] | None:
    """(index, log-likelihood) of the best choice of a multiple_choice sample (lm-eval's own medqa_4options,
    medmcqa), whose filtered_resps are [log-likelihood, is_greedy] pairs; None for generated text."""
    resps = rec.get("filtered_resps")
    if not isinstance(resps, list) or not resps:
        return None
    if not all(isinstance(x, (list, tuple)) and x and isinstance(x[0], (int, float)) for x in resps):
        return None
    best = max(range(len(resps)), key=lambda i: resps[i][0])
    return best, float(resps[best][0])


def gold_of(doc: dict, rec: dict) -> str | None:
    gold = doc.get("answer_idx", rec.get("target"))
    if isinstance(gold, int) and not isinstance(gold, bool):  # multiple_choice targets are indices
        return chr(65 + gold)
    return None if gold is None else str(gold)


def response_text(rec: dict) -> str:
    resps = rec.get("resps")
    while isinstance(resps, list) and resps:
        resps = resps[0]
    if isinstance(resps, str):
        return resps
    filtered = rec.get("filtered_resps")
    return str(filtered[0] if isinstance(filtered, list) and filtered else filtered or "")


def trace_records_for(
    results_file: Path, task: str, budget, forcing, cache: dict | None = None, model: str | None = None
) -> dict:
    """doc_id -> the trace records of this task and setting near the results file, oldest first
    (``cache``: path -> records, so a file shared by several tasks or settings is read once). Records
    that name another model (``model``; records written before it was added have none) are another
    run's: skipped."""
    cache = {} if cache is None else cache
    out: dict = {}
    for f in trace_files_near(results_file):
        if f not in cache:
            cache[f] = list(read_records(f))
        for rec in cache[f]:
            if rec["task"] != task or model is not None and rec["model"] not in (None, model):
                continue
            if "requested_thinking_budget" in rec and str(rec["requested_thinking_budget"]) != str(budget):
                continue
            if "forcing" in rec and rec["forcing"] != forcing:
                continue
            out.setdefault(rec.get("doc_id"), []).append(rec)
    return out


def record_is_item(rec: dict, doc: dict) -> bool:
    """A trace record names the item it was written for (``item_id``, ``item_hash``; older records
    have neither): one written at the same doc_id for another question (another data file into the
    same m1_traces/ folder) is not this item's."""
    if (
        rec.get("item_id") not in (None, "")
        and doc.get("id") not in (None, "")
        and str(rec["item_id"]) != str(doc["id"])
    ):
        return False
    return rec.get("item_hash") in (None, "") or rec["item_hash"] == item_hash(doc)


def matching_record(records: list[dict], text: str, doc: dict) -> dict | None:
    """The newest record of this item whose trace text is the sample's response: older records carry
    no model name, so another model's run written to the same m1_traces/ folder must not be taken for
    this one."""
    return next((r for r in reversed(records) if r.get("text", text) == text and record_is_item(r, doc)), None)


class ItemIds:
    """One key per item of a task across all runs, by identity: the doc_id of the first run that holds
    the item, so runs over one data file keep lm-eval's doc_ids, while a run over a shifted or edited
    file pairs each question with the same question, never with what sits at its position."""

    def __init__(self):
        self.keys: dict[tuple, object] = {}  # (task, identity) -> key
        self.taken: dict[str, set] = {}  # task -> keys in use

    def key(self, task: str, identity: str, doc_id):
        if (task, identity) not in self.keys:
            taken = self.taken.setdefault(task, set())
            key = doc_id if doc_id not in taken else f"{doc_id}:{identity}"
            taken.add(key)
            self.keys[task, identity] = key
        return self.keys[task, identity]


def load_runs(paths, metric: str = "acc") -> list[Run]:
    """Every (model, task, setting) under ``paths`` with its per-item outcomes."""
    results = load_results(paths, metric)  # a missing path: ResultsError, printed by the CLI as one sentence
    if not results:
        raise ExplainError(
            f"no lm-eval results (results_*.json) with metric {metric!r} under: {' '.join(map(str, paths))}"
        )
    labels = {}
    for r in results:  # lm-eval's own runs get their model type in the name: "Qwen2.5 (hf)"
        name = display_name(r.model)
        labels[r.setting] = name if r.budget is not None or not r.model_type else f"{name} ({r.model_type})"
    runs, trace_cache, ids = [], {}, ItemIds()
    for r in results:
        source = Path(r.source)
        samples = read_sample_records(source, r.task, r.metric_key)
        if not samples:
            raise ExplainError(
                f"{source}: no samples_{r.task}_*.jsonl beside it; rerun lm-eval with --log_samples "
                "(explain needs every item's answer)"
            )
        traces = (
            trace_records_for(source, r.task, r.budget, r.forcing, trace_cache, r.run_model)
            if r.budget is not None
            else {}
        )
        run = Run(labels[r.setting], r.task, r.budget, r.forcing, str(source))
        metric_name = r.metric_key.partition(",")[0]
        for rec, identity in zip(samples, keyed_by_item(rec.get("doc") or {} for rec in samples)):
            doc_id, doc = rec["doc_id"], rec.get("doc") or {}
            item = ids.key(r.task, identity, doc_id)
            options = options_of(doc)
            choice = loglikelihood_choice(rec)
            if choice is not None:  # scored by log-likelihood of each option: no text to extract from
                letter, method = chr(65 + choice[0]), "loglikelihood"
                text = f"{letter} (highest log-likelihood, {choice[1]:.2f})"
            else:
                text = response_text(rec)
                if options:
                    letter, method = extract_choice(text, options)
                    method = METHOD_GROUPS[method].removesuffix("_share")
                else:
                    letter, method = None, "-"
            trace = matching_record(traces.get(doc_id, []), text, doc)  # the records of this run: its own doc_ids
            run.outcomes[item] = Outcome(
                correct=bool(float(rec[metric_name])),
                letter=letter,
                method=method,
                answer=answer_part(text).strip(),
                text=text,
                thinking_tokens=trace.get("thinking_tokens") if trace else None,
                hit_budget=bool(trace.get("hit_budget")) if trace else None,
                record=trace,
            )
            run.docs[item] = (doc, gold_of(doc, rec))
        runs.append(run)
    return runs


def by_model_task(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """(model, task) -> its runs, least thinking first."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.model, r.task), []).append(r)
    return {k: sorted(v, key=lambda r: r.key) for k, v in sorted(groups.items())}
