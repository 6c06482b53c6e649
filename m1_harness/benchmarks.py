"""lm-eval tasks for JSONL benchmarks that plugins register (``m1_register_benchmarks``).

Each registered benchmark becomes a task YAML that includes the m1 template, so it gets the
m1 prompt, ``\\boxed{}`` scoring and extraction metrics with no code in the plugin. The YAMLs
are written to a cache folder named by a hash of the registrations, so an unchanged plugin set
reuses the folder and a changed one never sees stale tasks. A benchmark whose file is missing keeps
its task (one warning): only a run that asks for it fails, with the file named.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import yaml

from m1_harness.paths import cache_dir, shipped_dir

TEMPLATE = "m1/_m1_template_yaml"
log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_missing(bench) -> None:
    """A plugin whose data file is missing (installed without its package data) costs only its own
    tasks: one warning per file and process, never an error for a run that does not ask for them."""
    if str(bench.path) in _warned:
        return
    _warned.add(str(bench.path))
    log.warning(
        "m1-harness: plugin %r registered benchmark %r with data %s, which does not exist: its task fails "
        "if asked for; reinstall the plugin with its data files (package-data)",
        bench.plugin,
        bench.name,
        bench.path,
    )


GROUP = "m1/m1.yaml"


def _task_yaml(bench) -> str:
    template = shipped_dir("tasks") / TEMPLATE
    return (
        f"task: {bench.name}\n"
        f"include: {json.dumps(str(template))}\n"
        f"dataset_kwargs:\n  benchmark: {json.dumps(bench.name)}\n  source: {json.dumps(str(bench.path.resolve()))}\n"
    )


def _group_yaml(group: str, tasks: list[str]) -> str:
    """A plugin's group aggregates its tasks as the m1 group does (tasks/m1/m1.yaml: acc, budget_cut,
    acc_uncut), so its row in lm-eval's table reads the same."""
    m1_group = yaml.safe_load((shipped_dir("tasks") / GROUP).read_text(encoding="utf-8"))
    return (
        f"group: {group}\ntask: {json.dumps(tasks)}\n"
        f"aggregate_metric_list: {json.dumps(m1_group['aggregate_metric_list'])}\nmetadata:\n  version: 1.0\n"
    )


def generated_task_dir(benchmarks) -> Path | None:
    """Write (once) and return the folder of task YAMLs for ``benchmarks``; None if there are none."""
    if not benchmarks:
        return None
    files: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for bench in benchmarks:
        if not bench.path.exists():
            _warn_missing(bench)  # its task stays listed; asking for it is the error (data.py)
        files[f"{bench.name}.yaml"] = _task_yaml(bench)
        if bench.group:
            groups.setdefault(bench.group, []).append(bench.name)
    for group, tasks in groups.items():
        files[f"_group_{group}.yaml"] = _group_yaml(group, tasks)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir("generated_tasks") / digest
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        (folder / ".complete").write_text("")
    return folder
