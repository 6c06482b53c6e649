"""The recipe runner: stages in order, each in ``<workdir>/<NN>_<label>/``, resumable.

Recipe YAML::

    workdir: runs/m1k            # relative to the current directory (``--workdir`` overrides)
    cache: runs/api_cache.sqlite # optional: the API response cache (default <workdir>/_cache/api.sqlite)
    stages:
      - stage: collect           # a registered stage name
        label: collect           # optional folder label (default: the stage name)
        params: {...}
      - dedup: {threshold: 95}   # shorthand: {stage name: params}

Each stage folder holds ``items.jsonl`` (the output), ``dropped.jsonl`` and ``rejected.jsonl``
(every item that left, with its id and reason), ``_done.json`` (counts, reasons, parameters and
their fingerprint, timing, stage report) and, for per-item stages, ``_progress.jsonl`` (one line
per finished item, appended as it finishes). A stage whose ``_done.json`` carries the same
fingerprint (its parameters, its version and the fingerprint of everything upstream) is skipped;
an unfinished per-item stage resumes after the items in its progress file. String parameters may
use ``$VARS`` (e.g. ``$M1_HARNESS_DATA/medqa.jsonl``); secrets are passed by the *name* of an
environment variable and never expanded into anything written.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from m1_harness.curation.items import dumps, read_jsonl, read_jsonl_tolerant, write_jsonl
from m1_harness.curation.stage import Drop, Reject, Stage, StageError
from m1_harness.http import UNREACHABLE

DONE = "_done.json"
PROGRESS = "_progress.jsonl"
PROGRESS_META = "_progress_meta.json"


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


class Context:
    """What a stage sees while it runs: its folder, the shared cache path, drop/reject, a report."""

    def __init__(self, *, workdir: Path, stage_dir: Path, label: str, cache_path: Path, show_progress: bool):
        self.workdir = workdir
        self.stage_dir = stage_dir
        self.label = label
        self.cache_path = cache_path
        self.show_progress = show_progress
        self.report: dict[str, Any] = {}  # stage-specific summary, saved in _done.json
        self.dropped: list[dict] = []
        self.rejected: list[dict] = []
        self.lock = threading.Lock()

    @staticmethod
    def _record(item: dict, reason: str, info: dict) -> dict:
        return {"id": item.get("id") if isinstance(item, dict) else None, "reason": reason, **info, "item": item}

    def drop(self, item: dict, reason: str, **info: Any) -> None:
        with self.lock:
            self.dropped.append(self._record(item, reason, info))

    def reject(self, item: dict, reason: str, **info: Any) -> None:
        with self.lock:
            self.rejected.append(self._record(item, reason, info))

    def progress(self, iterable=None, *, total=None, desc=None, unit="item"):
        return _tqdm(
            iterable=iterable,
            total=total,
            desc=desc or self.label,
            unit=unit,
            disable=not self.show_progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )


@dataclass
class StageSpec:
    stage: str
    label: str
    params: dict


@dataclass
class Recipe:
    stages: list[StageSpec]
    workdir: Path
    cache: Path | None = None
    source: str | None = None


@dataclass
class StageSummary:
    label: str
    stage: str
    dir: Path
    skipped: bool
    counts: dict
    seconds: float


@dataclass
class RecipeResult:
    workdir: Path
    stages: list[StageSummary] = field(default_factory=list)

    @property
    def output(self) -> Path | None:
        return self.stages[-1].dir / "items.jsonl" if self.stages else None


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _expand(value, where: str):
    """``$VARS`` in string parameters, from the environment; an unset one is an error before any stage runs
    (expandvars left ``$TEACHER_URL`` in a base_url, and the stage retried a URL that cannot answer)."""
    if isinstance(value, str) and "$" in value:
        unset = [a or b for a, b in _VAR.findall(value) if (a or b) not in os.environ]
        if unset:
            raise StageError(
                f"recipe {where}: ${unset[0]} is not set: export {unset[0]}=... before running "
                "(the recipe's comments say what it should name)"
            )
        return os.path.expandvars(value)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}, {k}") for k, v in value.items()}
    return value


def load_recipe(recipe: str | Path | dict, *, workdir: str | Path | None = None) -> Recipe:
    """Parse a recipe (a YAML path or an already-loaded mapping)."""
    source = None
    if not isinstance(recipe, dict):
        source = str(recipe)
        try:
            with open(recipe, encoding="utf-8") as fh:
                recipe = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            raise StageError(f"recipe {source}: no such file") from None
        except UnicodeDecodeError as exc:
            raise StageError(f"recipe {source}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            raise StageError(f"recipe {where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("stages"), list) or not recipe["stages"]:
        raise StageError(f"recipe {source or ''}: needs a non-empty 'stages' list")
    unknown = set(recipe) - {"workdir", "cache", "stages", "description", "name"}
    if unknown:
        raise StageError(f"recipe {source or ''}: unknown key(s) {sorted(unknown)}")
    specs: list[StageSpec] = []
    for n, entry in enumerate(recipe["stages"]):
        if isinstance(entry, str):
            entry = {"stage": entry}
        if not isinstance(entry, dict):
            raise StageError(f"recipe stage #{n + 1}: expected a mapping, got {entry!r}")
        if "stage" in entry:
            extra = set(entry) - {"stage", "label", "params"}
            if extra:
                raise StageError(f"recipe stage #{n + 1} ({entry['stage']}): unknown key(s) {sorted(extra)}")
            name, params, label = entry["stage"], entry.get("params") or {}, entry.get("label")
        elif len(entry) == 1:
            (name, params), label = next(iter(entry.items())), None
            params = params or {}
        else:
            raise StageError(f"recipe stage #{n + 1}: write '- stage: NAME' with 'params', or '- NAME: {{params}}'")
        if not isinstance(params, dict):
            raise StageError(f"recipe stage #{n + 1} ({name}): params must be a mapping")
        specs.append(
            StageSpec(
                stage=str(name),
                label=str(label or name),
                params=_expand(params, f"{source or ''} stage #{n + 1} ({name})"),
            )
        )
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise StageError(f"recipe: stage labels must be unique (use 'label:'), got {labels}")
    wd = workdir or recipe.get("workdir")
    if not wd:
        raise StageError("recipe: no 'workdir' (set it in the recipe or pass --workdir)")
    cache = recipe.get("cache")
    return Recipe(
        stages=specs,
        workdir=Path(_expand(str(wd), f"{source or ''} workdir")),
        cache=Path(_expand(str(cache), f"{source or ''} cache")) if cache else None,
        source=source,
    )


def _registry() -> dict[str, object]:
    from m1_harness import plugins

    return plugins.stages()


def _instantiate(spec: StageSpec, registry: dict) -> Stage:
    if spec.stage not in registry:
        raise StageError(f"unknown curation stage {spec.stage!r}; registered: {', '.join(sorted(registry))}")
    factory = registry[spec.stage]
    try:
        stage = factory(**spec.params)
    except StageError:
        raise
    except TypeError as exc:
        raise StageError(f"stage {spec.stage!r}: bad parameters: {exc}") from exc
    if not isinstance(stage, Stage):
        raise StageError(f"stage {spec.stage!r}: the registered factory returned {type(stage).__name__}, not a Stage")
    return stage


def _fingerprint(stage: Stage, upstream: str) -> str:
    payload = {
        "stage": stage.name,
        "class": f"{type(stage).__module__}.{type(stage).__qualname__}",
        "version": stage.version,
        "params": stage.params,
        "extra": stage.fingerprint_extra(),
        "upstream": upstream,
    }
    return hashlib.sha256(dumps(payload).encode()).hexdigest()[:20]


def _read_done(stage_dir: Path) -> dict | None:
    try:
        return json.loads((stage_dir / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_recipe(
    recipe: str | Path | dict | Recipe,
    *,
    workdir: str | Path | None = None,
    force: bool = False,
    from_stage: str | None = None,
    until: str | None = None,
    registry: dict | None = None,
    show_progress: bool | None = None,
    log=None,
) -> RecipeResult:
    """Run (or resume) a recipe; return per-stage summaries. ``force`` redoes every stage;
    ``from_stage`` redoes that stage and the ones after it; ``until`` stops after that label."""
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, workdir=workdir)
    if workdir is not None:
        rec.workdir = Path(workdir)
    registry = _registry() if registry is None else registry
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    labels = [s.label for s in rec.stages]
    for name, what in ((from_stage, "--from"), (until, "--until")):
        if name is not None and name not in labels:
            raise StageError(f"{what} {name!r}: no such stage label; labels: {labels}")
    stages = [_instantiate(spec, registry) for spec in rec.stages]  # fail fast on bad params
    rec.workdir.mkdir(parents=True, exist_ok=True)
    cache_path = rec.cache or rec.workdir / "_cache" / "api.sqlite"
    result = RecipeResult(workdir=rec.workdir)
    upstream = "root"
    items: list[dict] | None = None
    prev_dir: Path | None = None
    redo = force
    for n, (spec, stage) in enumerate(zip(rec.stages, stages)):
        if spec.label == from_stage:
            redo = True
        stage_dir = rec.workdir / f"{n:02d}_{spec.label}"
        fp = _fingerprint(stage, upstream)
        done = _read_done(stage_dir)
        if not redo and done and done.get("fingerprint") == fp and (stage_dir / "items.jsonl").exists():
            log(f"[{spec.label}] finished before with the same parameters: {done['counts']} (skipped)")
            result.stages.append(StageSummary(spec.label, spec.stage, stage_dir, True, done["counts"], 0.0))
            items, prev_dir = None, stage_dir
        else:
            if items is None:
                items = [] if prev_dir is None else list(read_jsonl(prev_dir / "items.jsonl"))
            items = _run_stage(stage, spec, stage_dir, fp, items, rec, cache_path, show_progress, redo, log, result)
            prev_dir = stage_dir
        upstream = fp
        if spec.label == until:
            break
    return result


def _prepare_dir(stage_dir: Path, fp: str, per_item: bool, redo: bool) -> None:
    """Keep a per-item checkpoint only when it was made with the same fingerprint."""
    meta = stage_dir / PROGRESS_META
    keep = False
    if per_item and not redo and meta.exists():
        try:
            keep = json.loads(meta.read_text()).get("fingerprint") == fp
        except (OSError, json.JSONDecodeError):
            keep = False
    if stage_dir.exists() and not keep:
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / DONE).unlink(missing_ok=True)
    if per_item and not keep:
        meta.write_text(json.dumps({"fingerprint": fp}))


def _run_stage(stage, spec, stage_dir, fp, items, rec, cache_path, show_progress, redo, log, result):
    _prepare_dir(stage_dir, fp, stage.per_item, redo)
    ctx = Context(
        workdir=rec.workdir, stage_dir=stage_dir, label=spec.label, cache_path=cache_path, show_progress=show_progress
    )
    started = time.time()
    t0 = time.perf_counter()
    resumed = 0
    if stage.per_item:
        out, resumed = _run_per_item(stage, ctx, items, log)
        stage.finish(ctx, out)
    else:
        out = stage.run(ctx, items)
    seconds = time.perf_counter() - t0
    ids = [it.get("id") for it in out]
    if len(set(ids)) != len(ids):
        dup = [k for k, c in Counter(ids).items() if c > 1][:5]
        raise StageError(f"stage {spec.label!r} produced duplicate ids, e.g. {dup}")
    write_jsonl(stage_dir / "items.jsonl", out)
    write_jsonl(stage_dir / "dropped.jsonl", ctx.dropped)
    write_jsonl(stage_dir / "rejected.jsonl", ctx.rejected)
    counts = {"in": len(items), "out": len(out), "dropped": len(ctx.dropped), "rejected": len(ctx.rejected)}
    unaccounted = counts["in"] - counts["out"] - counts["dropped"] - counts["rejected"]
    if spec.stage != "collect" and unaccounted > 0:
        raise StageError(f"stage {spec.label!r} lost {unaccounted} item(s) without dropping or rejecting them")
    done = {
        "stage": spec.stage,
        "label": spec.label,
        "fingerprint": fp,
        "params": stage.params,
        "counts": counts,
        "dropped_by_reason": dict(Counter(d["reason"] for d in ctx.dropped)),
        "rejected_by_reason": dict(Counter(r["reason"] for r in ctx.rejected)),
        "resumed_items": resumed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "report": ctx.report,
    }
    (stage_dir / DONE).write_text(json.dumps(done, indent=2, ensure_ascii=False) + "\n")
    log(f"[{spec.label}] {counts} in {seconds:.1f}s" + (f" ({resumed} resumed from checkpoint)" if resumed else ""))
    result.stages.append(StageSummary(spec.label, spec.stage, stage_dir, False, counts, seconds))
    return out


HEARTBEAT = 30.0  # seconds without a finished item before a stage says it is still waiting


def _unreachable(exc: BaseException) -> bool:
    """A server that stopped answering (after the client's retries): every other item would wait the same."""
    return getattr(exc, "kind", None) in UNREACHABLE


def _run_items(
    one, todo: list[dict], concurrency: int, label: str, n_finished, total: int, failures: list, log
) -> None:
    """Run ``one(item)`` over ``todo`` on ``concurrency`` daemon threads (so Ctrl-C ends the process at once,
    never waiting on a request in its retries); a line every ``HEARTBEAT`` s without progress; the first
    unreachable server stops the stage. Item errors are appended to ``failures``."""
    work: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    stop = threading.Event()
    for item in todo:
        work.put(item)

    def worker() -> None:
        while not stop.is_set():
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            try:
                one(item)
                done.put((item["id"], None))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                if not isinstance(exc, Exception):
                    stop.set()  # KeyboardInterrupt / SystemExit: no item starts after it
                done.put((item["id"], exc))

    for _ in range(max(1, min(concurrency, len(todo)))):
        threading.Thread(target=worker, name=f"curate-{label}", daemon=True).start()
    started = time.monotonic()
    try:
        for _ in todo:
            while True:
                try:
                    item_id, exc = done.get(timeout=HEARTBEAT)
                    break
                except queue.Empty:
                    log(
                        f"[{label}] still waiting after {time.monotonic() - started:.0f}s: {n_finished()} of {total} "
                        "items finished (a stage waiting on a server gives up when the server stops answering)"
                    )
            if exc is None:
                continue
            if not isinstance(exc, Exception):
                raise exc  # SystemExit from a worker: stop everything
            failures.append((item_id, exc))
            if _unreachable(exc):
                raise StageError(
                    f"stage {label!r}: its server does not answer ({exc}): start it or correct its "
                    f"base_url, then rerun; the {n_finished()} finished items are kept"
                )
    finally:
        stop.set()


def _run_per_item(stage: Stage, ctx: Context, items: list[dict], log=print) -> tuple[list[dict], int]:
    ids = [it.get("id") for it in items]
    if len(set(ids)) != len(ids) or None in ids:
        raise StageError(f"stage {ctx.label!r}: per-item stages need unique, non-empty item ids")
    progress_path = ctx.stage_dir / PROGRESS
    finished = {rec["id"]: rec for rec in read_jsonl_tolerant(progress_path) if rec.get("id") in set(ids)}
    resumed = len(finished)
    todo = [it for it in items if it["id"] not in finished]
    failures: list[tuple[str, BaseException]] = []
    stage.setup(ctx)
    bar = ctx.progress(total=len(items), desc=ctx.label)
    bar.update(resumed)
    # Repair a torn last line before appending, so every later record starts on its own line.
    if progress_path.exists() and progress_path.stat().st_size:
        with open(progress_path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
    fh = open(progress_path, "a", encoding="utf-8")
    write_lock = threading.Lock()

    def one(item: dict) -> None:
        try:
            out = stage.process(ctx, item)
            rec = {"id": item["id"], "status": "keep", "item": out}
        except Drop as d:
            rec = {"id": item["id"], "status": "drop", "reason": d.reason, "info": d.info}
        except Reject as r:
            rec = {"id": item["id"], "status": "reject", "reason": r.reason, "info": r.info}
        with write_lock:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            finished[item["id"]] = rec
            bar.update(1)

    try:
        _run_items(one, todo, stage.concurrency, ctx.label, lambda: len(finished), len(items), failures, log)
    finally:
        fh.close()
        bar.close()
        stage.teardown(ctx)
    if failures:
        shown = "; ".join(f"{i}: {type(e).__name__}: {e}" for i, e in failures[:5])
        raise StageError(
            f"stage {ctx.label!r}: {len(failures)} item(s) failed and stay unfinished (rerun to retry them; "
            f"{len(finished)} finished items are kept): {shown}"
        )
    out = []
    by_id = {it["id"]: it for it in items}
    for item_id in ids:
        rec = finished[item_id]
        if rec["status"] == "keep":
            out.append(rec["item"])
        elif rec["status"] == "drop":
            ctx.dropped.append({"id": item_id, "reason": rec["reason"], **rec.get("info", {}), "item": by_id[item_id]})
        else:
            ctx.rejected.append({"id": item_id, "reason": rec["reason"], **rec.get("info", {}), "item": by_id[item_id]})
    return out, resumed
