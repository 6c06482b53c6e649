"""Every sample of every item of one run, scored: what maj@k / pass@k / mean@k and their token cost
are computed from.

A run of m1_budget with ``samples=K`` hands lm-eval sample 0 of each item (so lm-eval's samples file
and accuracy are sample 0's) and writes one trace record per sample (``sample`` 0..K-1, ``text`` the
whole trace). Each sample's text is scored here with the task's own scoring (``scoring.score``, under
the same ``M1_HARNESS_MATCH`` / ``M1_HARNESS_STRICT`` rules the task uses), against the gold and
options of lm-eval's samples file. Sample 0 is scored twice, by lm-eval and here: the two must agree
on every item, so a trace file that does not belong to the results (another run, another model) is
an error, not a quiet wrong table. Greedy runs (records without ``sample``) are runs with K = 1.

The cost of a sample is the tokens the model decoded for it: its generated thinking ids (forced
"Wait" ids and the answer prefix are not decoded) plus its answer ids (``generated_tokens`` +
``answer_tokens`` of the record). That is what the sample costs run on its own, whether this run's
engine generated it or the trace cache replayed it from a larger setting, so settings and k are
compared at matched compute; sweep probes are not part of any sample. (The engine work a sweep did,
shared through the cache, is in the table's ``context_tokens`` / ``generated_tokens`` columns.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from m1_harness.errors import UserError
from m1_harness.scoring import score
from m1_harness.taskfns import scoring_rules

from .items import options_of
from .outcomes import gold_of, record_is_item, response_text, trace_records_for
from .results import TaskResult, read_sample_records
from .stats import SAMPLE_METRICS, sample_metrics

K_FIELDS = ["k", "samples", *SAMPLE_METRICS, "mean_generated_tokens_per_item"]


class SampledError(UserError):
    """Sample records that cannot be joined with lm-eval's results; the message says which and why."""


class NoTraceRecords(SampledError):
    """A run with no trace records at all (not m1_budget, or run without trace_path)."""


@dataclass(frozen=True)
class Sample:
    letter: str | None  # the extracted answer (None: none found)
    correct: bool
    tokens: int  # decoded by the model for this sample: thinking (generated) + answer


def decoded_tokens(rec: dict) -> int:
    """Tokens the model decoded for one trace record (see the module docstring)."""
    return int(rec.get("generated_tokens") or 0) + int(rec.get("answer_tokens") or 0)


def sampled_outcomes(result: TaskResult, cache: dict | None = None) -> dict:
    """doc_id -> the item's samples in sample order, for one task at one setting of one run."""
    source = Path(result.source)
    rows = read_sample_records(source, result.task, result.metric_key)
    if not rows:
        raise SampledError(
            f"{source}: no samples_{result.task}_*.jsonl beside it; rerun with --log_samples "
            "(the gold answers of each item come from it)"
        )
    traces = trace_records_for(source, result.task, result.budget, result.forcing, cache, result.run_model)
    if not traces:
        raise NoTraceRecords(
            f"{source}: no trace records of task {result.task} at budget {result.budget}, forcing "
            f"{result.forcing} beside it (a sweep's traces.jsonl or m1_budget's m1_traces/)"
        )
    metric = result.metric_key.partition(",")[0]
    rules = scoring_rules()
    out: dict = {}
    for row in rows:
        doc_id, doc = row["doc_id"], row.get("doc") or {}
        options, gold = options_of(doc), gold_of(doc, row)
        if not options or gold is None:
            raise SampledError(
                f"{source}: task {result.task} item {doc_id} has no options or no gold answer in "
                "lm-eval's samples file; maj@k and pass@k need multiple-choice items"
            )
        by_index: dict[int, dict] = {}
        for rec in traces.get(doc_id, []):  # oldest first: the newest record of a sample index wins
            if record_is_item(rec, doc):
                by_index[int(rec.get("sample") or 0)] = rec
        if not by_index:
            raise SampledError(
                f"{source}: no trace record for task {result.task} item {doc_id} at budget "
                f"{result.budget}, forcing {result.forcing} (the run's traces.jsonl or m1_traces/ "
                "must lie beside its results)"
            )
        if sorted(by_index) != list(range(len(by_index))):
            raise SampledError(
                f"{source}: task {result.task} item {doc_id} has trace records of samples "
                f"{sorted(by_index)}, not 0..{len(by_index) - 1}: an unfinished run? Rerun it"
            )
        samples = []
        for j in range(len(by_index)):
            rec = by_index[j]
            s = score(rec.get("text") or "", options, gold, **rules)
            samples.append(Sample(s.letter, s.correct, decoded_tokens(rec)))
        if by_index[0].get("text") != response_text(row) or samples[0].correct != bool(float(row[metric])):
            raise SampledError(
                f"{source}: task {result.task} item {doc_id}: sample 0 of the trace records "
                f"({'right' if samples[0].correct else 'wrong'}) is not the response lm-eval scored "
                f"({'right' if float(row[metric]) else 'wrong'}{'' if by_index[0].get('text') == response_text(row) else ', another text'}); "
                "the trace file holds another run's records. Rerun the setting into a fresh folder"
            )
        out[doc_id] = samples
    counts = {len(s) for s in out.values()}
    if len(counts) > 1:
        short = min(out, key=lambda d: len(out[d]))
        raise SampledError(
            f"{source}: task {result.task}: items have {sorted(counts)} samples (item {short}: "
            f"{len(out[short])}); every item needs the same number. Rerun the setting"
        )
    return out


def k_rows(outcomes: dict, ks: list[int]) -> list[dict]:
    """One row per k (``K_FIELDS``): maj@k, pass@k, mean@k with intervals, and the mean over items of
    the tokens decoded by the first k samples."""
    items = [outcomes[d] for d in sorted(outcomes, key=str)]
    drawn = len(items[0])
    bad = [k for k in ks if k > drawn]
    if bad:
        raise SampledError(f"k={bad[0]} asked but the run drew {drawn} samples per item")
    rows = []
    for k in ks:
        row = {
            "k": k,
            "samples": drawn,
            **sample_metrics([[(s.letter, s.correct) for s in samples] for samples in items], k),
        }
        row["mean_generated_tokens_per_item"] = sum(sum(s.tokens for s in samples[:k]) for samples in items) / len(
            items
        )
        rows.append(row)
    return rows


def default_ks(drawn: int) -> list[int]:
    """1, 2, 4, ... up to the samples drawn, and the number drawn itself."""
    ks, k = [], 1
    while k < drawn:
        ks.append(k)
        k *= 2
    return ks + [drawn]
