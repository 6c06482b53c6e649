"""Reading lm-eval output folders into one record per (model, task, thinking budget, forcing).

lm-eval 0.4.13 (``EvaluationTracker``) writes, for ``--output_path OUT``::

    OUT/<model_name_sanitized>/results_<date_id>.json
    OUT/<model_name_sanitized>/samples_<task>_<date_id>.jsonl     (with --log_samples)

and for ``--output_path file.json``: ``file_<date_id>.json`` with the samples beside it. Any path given
here may be such a folder (searched recursively), a results file, or a glob.

The model is named by ``config.model_args`` (``pretrained``/``model``/``path``/``engine`` as lm-eval
itself does, else ``model_name``). The thinking budget and forcing rounds come from the model_args of
``m1_budget`` (``thinking_budget``, ``forcing``) or s1's aliases (``max_tokens_thinking``,
``thinking_n_ignore``, in model_args or gen_kwargs). Runs without them (lm-eval's own ``hf`` or
``vllm``) have budget and forcing ``None``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from m1_harness.errors import UserError
from m1_harness.jsonl import json_lines
from m1_harness.records import read_records

from .items import keyed_by_item

log = logging.getLogger(__name__)

BUDGET_KEYS = ("thinking_budget", "max_tokens_thinking")
FORCING_KEYS = ("forcing", "thinking_n_ignore")
NAME_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")  # lm-eval's order
WHERE_KEYS = ("trace_path", "cache_dir")  # model_args that say where files go, not what was run
_RESULTS_RE = re.compile(r"^(?:results|.+)_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")


class ResultsError(UserError, ValueError):
    """A results file that cannot be read; the message names it and says what is wrong."""


@dataclass
class TaskResult:
    """One task's accuracy in one run (one results file)."""

    model: str
    task: str
    budget: int | str | None
    forcing: int | None
    acc: float
    n: int
    metric_key: str  # e.g. "acc,none"
    source: str  # the results file
    date: str  # lm-eval's date_id (sortable), "" if unknown
    model_type: str = ""  # lm-eval model class name: m1_budget, hf, vllm ...
    stderr: float | None = None
    items: dict = field(default_factory=dict, repr=False)  # item identity (items.keyed_by_item) -> 0/1 (may be empty)
    ran_budget: int | None = None  # the largest budget that really ran, when the context clamped some requests
    run_model: str = ""  # the model as its run names it; ``model`` adds ``[what differs]`` when runs collide
    run_args: dict = field(default_factory=dict, repr=False)  # what else was run: model_args, limit, data

    @property
    def budget_label(self) -> str:
        """The budget as asked, and what ran when the context clamped it: ``4096 (ran <=225)``."""
        if self.ran_budget is not None and as_int(self.budget) != self.ran_budget:
            return f"{self.budget} (ran <={self.ran_budget})"
        return str(self.budget)

    @property
    def setting(self) -> tuple:
        return (self.model, self.budget, self.forcing)


def parse_arg_string(args) -> dict:
    """lm-eval model_args as a dict: accepts a dict, ``"k=v,k2=v2"`` or None."""
    if not args:
        return {}
    if isinstance(args, dict):
        return dict(args)
    out = {}
    for part in str(args).split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def as_int(value):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)  # e.g. "auto"
    return int(f) if f == int(f) else f


def model_name_of(config: dict, fallback: str | None = None) -> str:
    args = parse_arg_string(config.get("model_args"))
    for key in NAME_KEYS:
        if key in args and args[key] not in (None, ""):
            return str(args[key])
    return fallback or str(config.get("model") or "unknown")


def budget_and_forcing(config: dict) -> tuple:
    """(budget, forcing) from a results file's ``config``; (None, None) for models without budgets."""
    margs = parse_arg_string(config.get("model_args"))
    gargs = parse_arg_string(config.get("gen_kwargs"))
    budget = forcing = None
    has = False
    for src in (gargs, margs):  # model_args win
        for k in BUDGET_KEYS:
            if k in src:
                budget, has = as_int(src[k]), True
        for k in FORCING_KEYS:
            if k in src:
                forcing, has = as_int(src[k]), True
    if config.get("model") == "m1_budget":
        has = True
    if has and forcing is None:
        forcing = 0
    return budget, forcing


def find_results_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """All lm-eval aggregated results files under the given folders/files/globs, sorted."""
    found: set[Path] = set()
    for p in paths:
        p = str(p)
        candidates = [Path(x) for x in glob.glob(p, recursive=True)] if any(c in p for c in "*?[") else [Path(p)]
        for c in candidates:
            if c.is_dir():
                for f in c.rglob("*.json"):
                    if _is_results_file(f):
                        found.add(f.resolve())
            elif c.is_file():
                found.add(c.resolve())
            else:
                raise ResultsError(
                    f"no such results path: {p} (give lm-eval output folders, results_*.json files or quoted globs)"
                )
    return sorted(found)


def _is_results_file(path: Path) -> bool:
    if not _RESULTS_RE.match(path.name):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"results"' in head


def _date_id(path: Path) -> str:
    m = _RESULTS_RE.match(path.name)
    return m.group(1) if m else ""


def _metric_key(task_result: dict, metric: str) -> str | None:
    if f"{metric},none" in task_result:
        return f"{metric},none"
    for key in task_result:
        name, _, _flt = key.partition(",")
        if name == metric and _flt:
            return key
    return None


def samples_file(results_file: Path, task: str) -> Path | None:
    """``samples_<task>_<date_id>.jsonl`` beside a results file (lm-eval's --log_samples), or None."""
    date = _date_id(results_file)
    exact = results_file.parent / f"samples_{task}_{date}.jsonl"
    if exact.is_file():
        return exact
    candidates = [c for c in sorted(results_file.parent.glob(f"samples_{task}_*.jsonl")) if date and date in c.name]
    return candidates[0] if candidates else None


def read_sample_records(results_file: Path, task: str, metric_key: str) -> list[dict]:
    """The whole sample records of one task (doc, resps, metrics), one per doc under the metric's filter."""
    path = samples_file(results_file, task)
    if path is None:
        return []
    metric, _, flt = metric_key.partition(",")
    out = []
    for _, rec in json_lines(path):
        if not isinstance(rec, dict) or (flt and rec.get("filter", flt) != flt):
            continue
        if metric in rec:
            rec.setdefault("doc_id", len(out))
            out.append(rec)
    return out


def read_samples(results_file: Path, task: str, metric_key: str) -> dict:
    """doc_id -> metric value from ``samples_<task>_<date_id>.jsonl`` beside the results file."""
    metric = metric_key.partition(",")[0]
    return {rec["doc_id"]: float(rec[metric]) for rec in read_sample_records(results_file, task, metric_key)}


def read_results_file(path: str | os.PathLike, metric: str = "acc", with_samples: bool = True) -> list[TaskResult]:
    """The per-task results of one lm-eval results file (leaf tasks only, groups skipped)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a UTF-8 text file, so not an lm-eval results file") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path}: not a complete lm-eval results file (invalid JSON at line {exc.lineno}, "
            f"column {exc.colno}: {exc.msg}); a run interrupted while writing it, or a full disk? "
            "Rerun that setting"
        ) from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected an lm-eval results object, got a JSON {type(data).__name__}")
    config = data.get("config") or {}
    model = model_name_of(config, data.get("model_name"))
    budget, forcing = budget_and_forcing(config)
    nsamples = data.get("n-samples") or {}
    groups = set(data.get("group_subtasks") or {})
    out = []
    for task, res in (data.get("results") or {}).items():
        if task in groups or (nsamples and task not in nsamples):
            continue
        key = _metric_key(res, metric)
        if key is None or not isinstance(res.get(key), (int, float)):
            continue
        n = None
        if task in nsamples:
            n = nsamples[task].get("effective", nsamples[task].get("original"))
        if n is None:
            n = res.get("sample_len")
        items, data = {}, None
        if with_samples:
            records = read_sample_records(path, task, key)
            metric_name = key.partition(",")[0]
            items = {
                k: float(rec[metric_name])
                for k, rec in zip(keyed_by_item(rec.get("doc") or {} for rec in records), records)
            }
            data = _fingerprint(sorted(items)) if items else None
        if n is None:
            n = len(items)
        stderr_key = key.replace(f"{metric},", f"{metric}_stderr,", 1)
        stderr = res.get(stderr_key)
        out.append(
            TaskResult(
                model=model,
                task=task,
                budget=budget,
                forcing=forcing,
                acc=float(res[key]),
                n=int(n),
                metric_key=key,
                source=str(path),
                date=_date_id(path),
                model_type=str(config.get("model") or ""),
                stderr=stderr if isinstance(stderr, (int, float)) else None,
                items=items,
                ran_budget=ran_budget(path, task, budget, forcing),
                run_model=model,
                run_args=_run_args(config, data),
            )
        )
    return out


def _run_args(config: dict, data: str | None) -> dict:
    """What a run was besides its model and setting: a rerun with another of these is another result."""
    args = {
        k: str(v)
        for k, v in parse_arg_string(config.get("model_args")).items()
        if k not in WHERE_KEYS + BUDGET_KEYS + FORCING_KEYS + NAME_KEYS
    }
    limit = as_int(config.get("limit"))
    args["limit"] = "all" if limit is None else str(limit)
    if data is not None:
        args["data"] = data
    return args


def _alike(a: dict, b: dict) -> bool:
    """Two runs of one setting run alike: the same run_args, where items unknown (no samples) match any."""
    keys = set(a) | set(b)
    if "data" not in a or "data" not in b:
        keys.discard("data")
    return all(a.get(k) == b.get(k) for k in keys)


def _fingerprint(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:6]


def trace_files_near(results_file: Path) -> list[Path]:
    """Where m1_budget's records for a results file lie: a sweep's ``<setting>/traces.jsonl`` or the
    ``m1_traces/`` folder m1_budget writes beside lm-eval's output."""
    found = []
    for folder in (results_file.parent, results_file.parent.parent):
        found += sorted(folder.glob("traces*.jsonl")) + sorted(folder.glob("m1_traces/*.jsonl"))
    return found


def ran_budget(results_file: Path, task: str, budget, forcing) -> int | None:
    """The largest thinking budget that really ran for ``task`` at this setting, when the context clamped
    any request below the asked one (trace records: ``budget_clamped``); None when none was clamped."""
    recs = [
        rec
        for f in trace_files_near(results_file)
        for rec in read_records(f)
        if rec.get("task") in (task, None)
        and as_int(rec.get("requested_thinking_budget")) == budget
        and (rec.get("forcing") or 0) == (forcing or 0)
    ]
    if not any(rec.get("budget_clamped") for rec in recs):
        return None
    return max(int(rec["thinking_budget"]) for rec in recs)


def load_results(
    paths: Iterable[str | os.PathLike], metric: str = "acc", with_samples: bool = True
) -> list[TaskResult]:
    """All task results under ``paths``. Runs of one (model, task, budget, forcing) that were run alike
    (same other model_args, ``--limit`` and items) are reruns: the newest wins. Runs that differ in any
    of these are all kept, each model named with what differs (``org/m1 [limit=8]``), so no table or
    figure drops or merges one without saying so."""
    groups: dict[tuple, list[TaskResult]] = {}  # table key -> one result per distinct run
    for f in find_results_files(paths):
        try:
            found = read_results_file(f, metric, with_samples)
        except ResultsError as exc:
            log.warning("skipping %s", exc)
            continue
        for r in found:
            rs = groups.setdefault((r.model, r.task, r.budget, r.forcing), [])
            same = next((i for i, q in enumerate(rs) if _alike(q.run_args, r.run_args)), None)
            if same is None:
                rs.append(r)
            elif (r.date, r.source) > (rs[same].date, rs[same].source):
                rs[same] = r
    differing: dict[str, set[str]] = {}  # results file -> the run_args that tell it from a colliding run
    for rs in groups.values():
        if len(rs) > 1:
            keys = {k for r in rs for k in r.run_args if len({q.run_args.get(k) for q in rs}) > 1}
            if keys - {"data"}:  # another --limit or answer budget says enough; the items differ by it
                keys.discard("data")
            for r in rs:
                differing.setdefault(r.source, set()).update(keys)
    kept = [r for rs in groups.values() for r in rs]
    for r in kept:
        if r.source in differing:  # the whole run gets the label, so its tasks stay on one row
            r.model = f"{r.run_model} [{', '.join(f'{k}={r.run_args.get(k)}' for k in sorted(differing[r.source]))}]"
    return sorted(kept, key=lambda r: (r.model, r.task, sortable(r.budget), sortable(r.forcing)))


def sortable(v):
    if v is None:
        return (0, 0, "")
    if isinstance(v, (int, float)):
        return (1, v, "")
    return (2, 0, str(v))


def display_name(model: str) -> str:
    """A short label: the last path component for local paths, the Hub id as is."""
    if model.startswith(("/", ".", "~")) or os.sep in model and Path(model).exists():
        return Path(model.rstrip("/")).name or model
    return model


def _model_beside(trace_file: Path) -> str | None:
    """The model of the lm-eval results next to a trace file: a sweep writes ``<setting>/traces.jsonl``
    beside ``<setting>/<model>/results_*.json``; m1_budget's default is ``<output>/m1_traces/``."""
    for folder in (trace_file.parent, trace_file.parent.parent):
        names = set()
        for f in folder.glob("*/results_*.json"):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            names.add(model_name_of(data.get("config") or {}, data.get("model_name")))
        if len(names) == 1:
            return names.pop()
    return None


def load_traces(patterns: Iterable[str]) -> dict[str, list[dict]]:
    """Trace records (JSONL written by m1_budget at ``trace_path``) grouped by model.

    The model is the record's ``model`` (or ``pretrained``) field, which m1_budget writes; for older
    records without one, the model of the lm-eval results beside the trace file (see ``_model_beside``),
    else the file's stem."""
    groups: dict[str, list[dict]] = {}
    files = sorted({Path(f) for p in patterns for f in glob.glob(str(p), recursive=True) if Path(f).is_file()})
    for f in files:
        beside = None
        for rec in read_records(f):
            rec.pop("text", None)  # the full trace string: not needed here, and large
            model = rec.get("model") or rec.get("pretrained")
            if not model:
                if beside is None:
                    beside = _model_beside(f) or f.stem
                model = beside
            groups.setdefault(str(model), []).append(rec)
    return groups
