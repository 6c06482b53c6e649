"""Checks of a run's arguments and data that lm-eval makes only after the model loaded (or never).

Why here: lm-eval builds the model before it reads any task's data or looks at ``--limit``, so a bad
limit, a missing data folder or a malformed item surfaced as a traceback after minutes of loading.
``preflighted`` wraps ``lm_eval.evaluator.simple_evaluate`` (installed by the start-up hook and by
``m1-harness eval``/``sweep``) so every run checks these first; ``unknown_tasks`` turns lm-eval's
"Tasks not found" into one sentence with the names meant.
"""

from __future__ import annotations

import difflib
import functools

from m1_harness import data as m1_data
from m1_harness.errors import UserError

LOADER = "m1_harness.taskfns.load_dataset"  # the custom_dataset of every m1 task (tasks/m1/_m1_template_yaml)


class RunArgError(UserError, ValueError):
    """A run argument (``--limit``, ``--tasks``) that cannot work; found before the model loads."""


def check_limit(limit, setting: str = "--limit") -> None:
    """lm-eval reads ``--limit`` >= 1 as items per task and 0 < limit < 1 as a share of each task."""
    if limit is None:
        return
    try:
        value = float(limit)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or (value >= 1 and not value.is_integer()):
        shown = f"{value:g}" if value == value else str(limit)
        raise RunArgError(
            f"{setting} {shown}: give a whole number of items per task (e.g. {setting} 10) or a share "
            f"of each task between 0 and 1 (e.g. {setting} 0.1), or leave it out for every item"
        )


def task_names(tasks, setting: str = "--tasks") -> list:
    """The names in ``--tasks`` (one string or several, comma-separated), spaces and empty names dropped.

    lm-eval splits on commas only, so ``medqa,`` or ``medqa, medbullets4`` asked for a task named "" or
    " medbullets4" and failed with "no task or group named ." after its index was built; ``sweep`` reads
    the same text the same way. Entries that are not strings (task configs) pass through.
    """
    parts = [tasks] if isinstance(tasks, str) else list(tasks or ())
    names = [n.strip() for p in parts for n in (p.split(",") if isinstance(p, str) else [p])]
    names = [n for n in names if n != ""]
    if not names:
        raise RunArgError(
            f"{setting} {','.join(map(str, parts))!r}: no task named; give at least one task or group "
            f"(e.g. {setting} medqa; `lm_eval ls tasks` lists them)"
        )
    return names


def _close(name: str, known: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` known names like ``name`` (a near spelling, or one that is the other plus a suffix such as
    ``medbullets`` -> ``medbullets4``, ``medqa_typo`` -> ``medqa``), alphabetically."""
    near = set(difflib.get_close_matches(name, known, n=n, cutoff=0.8))
    near |= {k for k in known if min(len(k), len(name)) >= 4 and (name.startswith(k) or k.startswith(name))}
    ratio = lambda k: difflib.SequenceMatcher(None, name, k).ratio()  # noqa: E731
    return sorted(sorted(near, key=ratio, reverse=True)[:n])


def unknown_tasks(missing: list[str], known: list[str]) -> RunArgError:
    """The error for task names no folder defines, with the close names that do exist."""
    meant = list(dict.fromkeys(m for name in missing for m in _close(name, known)))
    hint = f"; did you mean {', '.join(meant)}?" if meant else "."
    return RunArgError(
        f"--tasks: no task or group named {', '.join(missing)}{hint} (`lm_eval ls tasks` lists them; "
        "add task folders with --include_path)"
    )


def _m1_tasks(names, index) -> list[dict]:
    """The configs of the m1 tasks that ``names`` (tasks, groups, tags) stand for."""
    out, seen, todo = [], set(), [n for n in names if isinstance(n, str)]
    while todo:
        name = todo.pop(0)
        entry = index.get(name)
        if name in seen or entry is None:
            continue
        seen.add(name)
        cfg = entry.cfg or {}
        kind = getattr(entry.kind, "name", "")
        if kind == "GROUP":
            todo += [t if isinstance(t, str) else t.get("task") for t in cfg.get("task") or [] if t]
        elif kind == "TAG":
            todo += [n for n, e in index.items() if name in (e.tags or ())]
        elif str(cfg.get("custom_dataset", "")).endswith(LOADER) and (cfg.get("dataset_kwargs") or {}).get("benchmark"):
            out.append(cfg)
    return out


def check_task_data(tasks, task_manager, metadata: dict | None = None) -> None:
    """Load and validate every m1 task's items now (a DataError names the file and line), as the task will."""
    if task_manager is None:
        return
    meta = {**(getattr(task_manager, "metadata", None) or {}), **(metadata or {})}
    for cfg in _m1_tasks(list(tasks or ()), task_manager.task_index):
        kwargs = cfg["dataset_kwargs"]
        m1_data.load_items(
            kwargs["benchmark"], meta.get("data"), kwargs.get("source"), bad_items=meta.get("bad_items", "error")
        )


def check_run(tasks, task_manager, *, limit=None, metadata: dict | None = None) -> None:
    """Everything about a run that can be checked without the model."""
    check_limit(limit)
    check_task_data(tasks, task_manager, metadata)


def preflighted(simple_evaluate):
    """``simple_evaluate`` that runs ``check_run`` before it builds the model."""
    if getattr(simple_evaluate, "_m1_preflight", False):
        return simple_evaluate

    @functools.wraps(simple_evaluate)
    def run(*args, **kwargs):
        check_run(
            kwargs.get("tasks"), kwargs.get("task_manager"), limit=kwargs.get("limit"), metadata=kwargs.get("metadata")
        )
        return simple_evaluate(*args, **kwargs)

    run._m1_preflight = True
    return run


def preflighted_tasks(process_tasks):
    """``EvaluatorConfig.process_tasks`` whose "Tasks not found" is ``unknown_tasks``' sentence."""
    if getattr(process_tasks, "_m1_preflight", False):
        return process_tasks

    @functools.wraps(process_tasks)
    def run(self, *args, **kwargs):
        check_limit(getattr(self, "limit", None))
        if isinstance(self.tasks, str) or all(isinstance(t, str) for t in self.tasks or ()):
            self.tasks = task_names(self.tasks)
        try:
            return process_tasks(self, *args, **kwargs)
        except ValueError as exc:
            prefix = "Tasks not found: "
            if not str(exc).startswith(prefix):
                raise
            from lm_eval.tasks import TaskManager

            missing = [t.strip() for t in str(exc)[len(prefix) :].split(",") if t.strip()]
            raise unknown_tasks(missing, TaskManager(include_path=self.include_path).all_tasks) from None

    run._m1_preflight = True
    return run
