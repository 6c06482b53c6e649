"""``m1-harness sweep``: one lm-eval run per (thinking budget, forcing rounds), through the trace cache.

    m1-harness sweep --model_args pretrained=UCSC-VLAA/m1-7B-1K --tasks m1 \\
        --budgets 512,1024,2048,4096,8192 --forcing 0,1,2,3 --output_path runs/m1-7B-1K

Settings run largest budget (and most forcing rounds) first: under greedy decoding every smaller
setting's thinking is a cut of the largest one. m1_budget's first run gets the rest of the grid as
probes (budget.py, ``BudgetForcer.run``): as each request's thinking ends, every other setting's
answer is generated from the still-cached prefix into the trace cache, so every later setting is a
pure replay; the sweep costs about one run at the largest setting. m1_budget is loaded once and
reconfigured per setting (other lm-eval models are built per setting by lm-eval).

Each setting is an ordinary lm-eval output folder, written by lm-eval's own EvaluationTracker::

    OUT/budget<B>_forcing<F>/<model_name_sanitized>/results_<date>.json
    OUT/budget<B>_forcing<F>/<model_name_sanitized>/samples_<task>_<date>.jsonl
    OUT/budget<B>_forcing<F>/traces.jsonl        (m1_budget's trace records, trace_path)

plus ``OUT/sweep.csv`` and ``OUT/sweep.json``: one row per (model, task, budget, forcing) with n, acc,
its 95% Wilson interval, the mean thinking tokens and the share of requests that hit the budget (the
last two from the trace records), and ``ran_budget`` / ``budget_clamped_share`` where the context
clamped requests below the asked budget.

Sampling (``--samples 1,2,4,8 --temperature 0.7 [--top_p P] [--seed S]``): each setting runs once
with ``samples=8`` (the largest k) and ``seed=S`` (0 unless given) in its model_args, so every sample
has its own seed and the trace cache shares them across settings as under greedy decoding; the rows
are then one per (model, task, budget, forcing, k) with maj@k, pass@k, mean@k, their 95% intervals
and the mean tokens the first k samples decoded per item (``sampled.py``, ``stats.sample_metrics``);
the setting's own columns repeat on each of its k rows (``acc``: lm-eval's, of sample 0; the trace
statistics and engine work: over all samples of the run).

Resumable: a setting is done when its results cover every requested task AND its
``sweep_setting.json`` (written before the setting runs, so an interrupt right after lm-eval saved its
results never leaves them unnamed) records the same model, model_args, tasks,
limit, data and decoding arguments as asked; a folder holding another run is refused with what
differs (``--force`` moves it aside and redoes it), so a table never mixes two runs. A killed run
resumes from the trace cache.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from m1_harness.errors import Interrupted, UserError
from m1_harness.paths import DATA_ENV, atomic_write_text, ensure_writable_dir
from m1_harness.preflight import check_limit, check_run, task_names, unknown_tasks
from m1_harness.records import read_records
from m1_harness.thinking.engines.base import TOKEN_COUNTS

from .results import as_int, load_results, parse_arg_string
from .sampled import K_FIELDS, k_rows, sampled_outcomes
from .stats import wilson_interval

log = logging.getLogger(__name__)

SETTING_KEYS = ("thinking_budget", "forcing", "trace_path", "max_tokens_thinking", "thinking_n_ignore")
FIELDS = [
    "model",
    "task",
    "budget",
    "forcing",
    "n",
    "acc",
    "ci_low",
    "ci_high",
    "mean_thinking_tokens",
    "hit_budget_share",
    "ran_budget",
    "budget_clamped_share",
    "trace_records",
    "results_file",
    *TOKEN_COUNTS,
]  # engine work of the setting's run (+ its probes)
MANIFEST = "sweep_setting.json"
SAMPLING_GEN_KWARGS = ("temperature", "top_p", "do_sample")  # set by --temperature / --top_p under --samples


class SweepError(UserError):
    """A sweep folder that holds another run's results, or sweep arguments that cannot work."""


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip() != ""]
    except ValueError:
        raise SweepError(f"--{what} takes comma-separated integers, got {text!r}") from None


def parse_int_list(text: str, what: str) -> list[int]:
    values = _ints(text, what)
    if not values or any(v < 0 for v in values):
        raise SweepError(f"--{what} needs at least one non-negative integer, got {text!r}")
    return sorted(set(values))


def parse_samples(text: str) -> list[int]:
    """--samples: the k to report, positive and increasing (the run draws the last of them)."""
    ks = _ints(text, "samples")
    if not ks or any(k < 1 for k in ks):
        raise SweepError(f"--samples needs positive integers (samples per item), got {text!r}")
    if any(b <= a for a, b in zip(ks, ks[1:])):
        raise SweepError(f"--samples must increase (e.g. 1,2,4,8), got {text!r}")
    return ks


def sampling_args(
    model_args: str,
    gen_kwargs: str | None,
    ks: list[int],
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
) -> tuple[str, str]:
    """(model_args, gen_kwargs) of a sampled sweep: samples=max(ks) and seed in the model_args,
    do_sample / temperature / top_p in the gen_kwargs; clear errors for what cannot be meant."""
    if temperature is None or temperature <= 0:
        raise SweepError(
            f"--samples {','.join(map(str, ks))} needs --temperature above 0 (got {temperature}): "
            "greedy samples of one item are all the same"
        )
    if top_p is not None and not 0 < top_p <= 1:
        raise SweepError(f"--top_p must be in (0, 1], got {top_p}")
    taken = [k for k in ("samples", "seed") if k in parse_arg_string(model_args)]
    if taken:
        raise SweepError(f"--model_args sets {', '.join(taken)}: a sampled sweep sets them from --samples and --seed")
    taken = [k for k in SAMPLING_GEN_KWARGS if k in parse_arg_string(gen_kwargs)]
    if taken:
        raise SweepError(f"--gen_kwargs sets {', '.join(taken)}: give sampling as --temperature / --top_p")
    margs = ",".join(p for p in (model_args, f"samples={ks[-1]},seed={0 if seed is None else seed}") if p)
    # do_sample: the m1 task YAMLs say do_sample: false, which a temperature alone would not override
    sampling = f"do_sample=True,temperature={temperature}" + (f",top_p={top_p}" if top_p is not None else "")
    return margs, ",".join(p for p in (gen_kwargs, sampling) if p)


def settings_order(budgets, forcings) -> list[tuple[int, int]]:
    """Largest budget first, and within a budget the most forcing rounds first (the longest traces)."""
    return [(b, f) for b in sorted(set(budgets), reverse=True) for f in sorted(set(forcings), reverse=True)]


def setting_dir(output_path: str | Path, budget: int, forcing: int) -> Path:
    return Path(output_path) / f"budget{budget}_forcing{forcing}"


def base_model_args(model_args: str) -> str:
    """The user's model_args without the keys the sweep sets per setting."""
    kept = []
    for part in (model_args or "").split(","):
        key = part.partition("=")[0].strip()
        if not part.strip():
            continue
        if key in SETTING_KEYS:
            log.warning("sweep: ignoring %s in --model_args (the sweep sets it per setting)", part.strip())
            continue
        kept.append(part.strip())
    return ",".join(kept)


def setting_model_args(base: str, budget: int, forcing: int, trace_path: Path | None) -> str:
    extra = f"thinking_budget={budget},forcing={forcing}"
    if trace_path is not None:
        extra += f",trace_path={trace_path}"
    return f"{base},{extra}" if base else extra


def setting_identity(model: str, model_args: str, tasks: list[str], **run_args) -> dict:
    """What makes two runs of one setting the same: compared before a finished setting is reused."""
    margs = {k: v for k, v in parse_arg_string(model_args).items() if k != "trace_path"}
    data = os.environ.get(DATA_ENV)
    return {
        "model": model,
        "model_args": dict(sorted(margs.items())),
        "tasks": list(tasks),
        "data": str(Path(data).expanduser().resolve()) if data else None,
        **{k: run_args.get(k) for k in sorted(run_args)},
    }


def identity_differences(folder: Path, wanted: dict) -> list[str]:
    """How the run recorded in ``folder`` differs from ``wanted`` (empty: the same run)."""
    try:
        have = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"it has no {MANIFEST} (written when a setting starts), so what made these results is unknown"]
    except (OSError, ValueError) as exc:
        return [f"its {MANIFEST} cannot be read ({exc})"]
    return [f"{k}: {have.get(k)!r} there, {wanted[k]!r} asked" for k in wanted if have.get(k) != wanted[k]]


def _requested_done(folder: Path, tasks: list[str]) -> bool:
    """True when some results file under ``folder`` covers every requested task (or group)."""
    for f in sorted(folder.rglob("results_*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        have = set(data.get("results") or {}) | set(data.get("group_subtasks") or {}) | set(data.get("configs") or {})
        if all(t in have for t in tasks):
            return True
    return False


def save_like_lm_eval(tracker, results: dict) -> None:
    """What lm-eval's CLI does after simple_evaluate: aggregated results, then samples per task."""
    samples = results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=samples)
    if samples:
        for task_name in results.get("configs", {}):
            if task_name in samples:
                tracker.save_results_samples(task_name=task_name, samples=samples[task_name])


def load_m1_budget(model_args: str, batch_size=None):
    """m1_budget built as lm-eval's CLI builds it (``--batch_size`` passed beside the model_args)."""
    from lm_eval.api.registry import get_model

    extra = {"batch_size": batch_size} if batch_size is not None else {}
    return get_model("m1_budget").create_from_arg_string(model_args, extra)


def _load_lm_eval_extensions() -> None:
    """Make m1_budget and the m1 tasks visible even with the autoload hook off (as `m1-harness eval`)."""
    try:
        from m1_harness import _autoload

        _autoload.register_model()
        import lm_eval.tasks.manager as manager

        _autoload.patch_task_manager(manager)
    except Exception as exc:  # noqa: BLE001  (the sweep still runs lm-eval's own models)
        log.warning("sweep: could not load m1-harness models/tasks into lm-eval: %s", exc)


def run_sweep(
    model_args: str,
    tasks: list[str],
    budgets: list[int],
    forcings: list[int],
    output_path: str | Path,
    *,
    model: str = "m1_budget",
    limit: float | None = None,
    batch_size=None,
    log_samples: bool = True,
    gen_kwargs: str | None = None,
    apply_chat_template: bool = False,
    num_fewshot: int | None = None,
    seed: int | None = None,
    include_path: str | None = None,
    write_traces: bool = True,
    force: bool = False,
    samples: list[int] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    evaluate: Callable | None = None,
    echo=print,
    ran: list | None = None,
) -> list[dict]:
    """Run every setting not yet done, then write sweep.csv / sweep.json; returns the table rows.

    ``ran``: a list that gets the (budget, forcing) of each setting this call ran (not those it found
    done), so what this command cost is told apart from what earlier runs recorded.

    ``samples``: the k of a sampled sweep (see the module docstring), with ``temperature`` / ``top_p``.
    ``evaluate`` defaults to ``lm_eval.simple_evaluate``, with one TaskManager indexed for all settings
    (tests inject their own evaluate, which then gets ``task_manager=None``)."""
    from lm_eval.loggers import EvaluationTracker

    if samples is None and (temperature is not None or top_p is not None):
        raise SweepError(
            "--temperature / --top_p sample several answers per item: give --samples too (e.g. --samples 1,4)"
        )
    base = base_model_args(model_args)
    if samples is not None:
        base, gen_kwargs = sampling_args(base, gen_kwargs, samples, temperature, top_p, seed)
    out = ensure_writable_dir(output_path, "--output_path")
    order = settings_order(budgets, forcings)
    run_args = dict(
        limit=limit,
        gen_kwargs=gen_kwargs,
        num_fewshot=num_fewshot,
        apply_chat_template=apply_chat_template,
        seed=seed,
        include_path=include_path,
    )
    identities = {
        (b, f): setting_identity(model, setting_model_args(base, b, f, None), tasks, **run_args) for b, f in order
    }
    done = _check_finished(out, order, tasks, identities, force, echo)
    real_lm_eval = evaluate is None
    if evaluate is None:
        _load_lm_eval_extensions()
        from lm_eval import simple_evaluate as evaluate
    task_manager = loaded = None
    if real_lm_eval and not all(s in done for s in order):
        from lm_eval.tasks import TaskManager

        task_manager = TaskManager(include_path=include_path)  # indexed once, shared by every setting
        unknown = [t for t in tasks if not task_manager.match_tasks([t])]
        if unknown:  # before the model loads (lm-eval would say so only after)
            raise unknown_tasks(unknown, task_manager.all_tasks)
        check_run(tasks, task_manager, limit=limit)  # the data too, before the model loads
        if model == "m1_budget":  # loaded once, reconfigured per setting (a vLLM start-up costs minutes)
            loaded = load_m1_budget(base, batch_size)
    for i, (budget, forcing) in enumerate(order, 1):
        folder = setting_dir(out, budget, forcing)
        tag = f"[{i}/{len(order)}] budget={budget} forcing={forcing}"
        if (budget, forcing) in done:
            echo(f"{tag}: results of this run exist in {folder}, skipped")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        # what runs here, named before anything is written: lm-eval's results never lie unnamed
        atomic_write_text(folder / MANIFEST, json.dumps(identities[(budget, forcing)], indent=2) + "\n")
        trace_path = folder / "traces.jsonl" if write_traces else None
        if trace_path is not None and trace_path.exists():
            trace_path.unlink()  # records of an unfinished run; the trace cache keeps the generations
        margs = setting_model_args(base, budget, forcing, trace_path)
        echo(f"{tag}: {model} {margs}")
        tracker = EvaluationTracker(output_path=str(folder))
        kwargs = dict(
            model=model,
            model_args=margs,
            tasks=list(tasks),
            limit=limit,
            log_samples=log_samples,
            evaluation_tracker=tracker,
            gen_kwargs=gen_kwargs,
            apply_chat_template=apply_chat_template,
            num_fewshot=num_fewshot,
            task_manager=task_manager,
        )
        if loaded is not None:
            # the first (largest) setting answers every other one in flight; they then replay the cache
            probes = [s for s in order if s != (budget, forcing)] if i == 1 else None
            loaded.reconfigure(
                thinking_budget=budget,
                forcing=forcing,
                trace_path=str(trace_path) if trace_path else None,
                probes=probes,
            )
            kwargs["model"] = loaded  # model_args stay: lm-eval records them in the results' config
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        if seed is not None:
            kwargs.update(random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
        try:
            results = evaluate(**kwargs)
            if results is None:  # non-zero ranks under multi-process evaluation
                continue
            results["config"]["model"] = model  # lm-eval records a loaded model by its class name
            save_like_lm_eval(tracker, results)
        except KeyboardInterrupt:
            raise Interrupted(_interrupted(out, order, done, tag)) from None
        done.add((budget, forcing))
        if ran is not None:
            ran.append((budget, forcing))
    rows = sweep_table(out, [setting_dir(out, b, f) for b, f in order], samples)
    write_table(out, rows, samples is not None)
    return rows


def _interrupted(out: Path, order, done: set, tag: str) -> str:
    """What Ctrl-C during a setting leaves: the finished settings, and where the rest resumes from."""
    kept = [f"budget={b} forcing={f}" for b, f in order if (b, f) in done]
    return (
        f"interrupted (Ctrl-C) during {tag}: {len(kept)} of {len(order)} settings finished and are kept in {out}"
        + (f" ({', '.join(kept)})" if kept else "")
        + "; the requests the interrupted setting finished are in "
        "the trace cache. Rerun the same command to resume."
    )


def _check_finished(out: Path, order, tasks, identities: dict, force: bool, echo) -> set:
    """The settings already finished by this same run; a folder with another run's results is refused
    (with what differs) or, with ``force``, moved aside to be redone."""
    done, other = set(), []
    for setting in order:
        folder = setting_dir(out, *setting)
        if not _requested_done(folder, tasks):
            continue
        diffs = identity_differences(folder, identities[setting])
        if not diffs:
            done.add(setting)
        else:
            other.append((folder, diffs))
    if other and not force:
        lines = [f"  {folder}: " + "; ".join(diffs) for folder, diffs in other]
        raise SweepError(
            f"{out} holds results of another run for {len(other)} setting(s):\n"
            + "\n".join(lines)
            + "\nUse another --output_path, or --force to move those folders aside and redo them."
        )
    for folder, _ in other:
        aside = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        folder.rename(aside)
        echo(f"--force: moved {folder} (another run) to {aside}")
    return done


def trace_summary(trace_file: Path) -> dict[str | None, dict]:
    """task -> {records, mean_thinking_tokens, hit_budget_share}; key None summarises all records."""
    if not trace_file.is_file():
        return {}
    by: dict = {}
    for rec in read_records(trace_file):
        for key in {rec.get("task"), None}:
            by.setdefault(key, []).append(rec)
    out = {}
    for key, recs in by.items():
        hits = [bool(r["hit_budget"]) for r in recs if "hit_budget" in r]
        clamped = [r for r in recs if r.get("budget_clamped")]
        out[key] = {
            "records": len(recs),
            "mean_thinking_tokens": sum(float(r["thinking_tokens"]) for r in recs) / len(recs),
            "hit_budget_share": sum(hits) / len(hits) if hits else None,
            "ran_budget": max(as_int(r["thinking_budget"]) for r in recs) if clamped else None,
            "budget_clamped_share": len(clamped) / len(recs),
            **(
                {
                    k: sum(sum(r["round_tokens"][k]) + r.get("probe_tokens", {}).get(k, 0) for r in recs)
                    for k in TOKEN_COUNTS
                }
                if all("round_tokens" in r for r in recs)
                else {}
            ),
        }
    return out


def sweep_table(out: Path, folders: list[Path], ks: list[int] | None = None) -> list[dict]:
    """One row per (model, task, budget, forcing); with ``ks`` (a sampled sweep), one per k of each."""
    rows, cache = [], {}
    for folder in folders:
        if not folder.is_dir() or not any(folder.rglob("results_*.json")):
            continue
        traces = trace_summary(folder / "traces.jsonl")
        for r in load_results([folder], with_samples=False):
            # records name their task; records without one (a single-task run) count for every task
            t = traces.get(r.task) or (traces.get(None) if set(traces) == {None} else None) or {}
            lo, hi = wilson_interval(r.acc * r.n, r.n)
            rows.append(
                {
                    "model": r.model,
                    "task": r.task,
                    "budget": r.budget,
                    "forcing": r.forcing,
                    "n": r.n,
                    "acc": r.acc,
                    "ci_low": lo,
                    "ci_high": hi,
                    "mean_thinking_tokens": t.get("mean_thinking_tokens"),
                    "hit_budget_share": t.get("hit_budget_share"),
                    "ran_budget": t.get("ran_budget"),
                    "budget_clamped_share": t.get("budget_clamped_share"),
                    "trace_records": t.get("records", 0),
                    "results_file": str(Path(r.source).relative_to(out.resolve()))
                    if Path(r.source).is_relative_to(out.resolve())
                    else r.source,
                    **{k: t.get(k) for k in TOKEN_COUNTS},
                }
            )
            if ks:
                base = rows.pop()
                rows += [base | row for row in k_rows(sampled_outcomes(r, cache), ks)]
    rows.sort(
        key=lambda d: (
            d["model"],
            d["task"],
            d["budget"] if isinstance(d["budget"], int) else -1,
            d["forcing"] or 0,
            d.get("k", 0),
        )
    )
    return rows


def write_table(out: Path, rows: list[dict], sampled: bool = False) -> None:
    """sweep.csv and sweep.json, each written whole or not at all (a sampled sweep adds ``K_FIELDS``)."""
    fields = FIELDS + K_FIELDS if sampled else FIELDS
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    atomic_write_text(out / "sweep.csv", buf.getvalue())
    atomic_write_text(out / "sweep.json", json.dumps(rows, indent=2) + "\n")


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="m1_budget", help="lm-eval model (default m1_budget)")
    parser.add_argument(
        "--model_args", default="", help="base model_args, e.g. pretrained=UCSC-VLAA/m1-7B-1K,engine=vllm"
    )
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks or groups (e.g. m1)")
    parser.add_argument("--budgets", required=True, help="comma-separated thinking budgets, e.g. 512,1024,2048")
    parser.add_argument("--forcing", default="0", help="comma-separated budget-forcing rounds (default 0)")
    parser.add_argument("--output_path", required=True, help="sweep folder (one lm-eval output folder per setting)")
    parser.add_argument("--limit", type=float, default=None, help="items per task (as lm-eval's --limit)")
    parser.add_argument("--batch_size", default=None, help="as lm-eval's --batch_size")
    parser.add_argument("--gen_kwargs", default=None)
    parser.add_argument("--num_fewshot", type=int, default=None)
    parser.add_argument("--apply_chat_template", action="store_true")
    parser.add_argument("--include_path", default=None, help="extra task folder, as lm-eval's --include_path")
    parser.add_argument(
        "--seed", type=int, default=None, help="lm-eval's seeds; with --samples also the samples' seed (default 0)"
    )
    parser.add_argument(
        "--samples",
        default=None,
        metavar="K1,K2,...",
        help="sample answers per item and report maj@k, pass@k, mean@k at each k (e.g. 1,2,4,8); "
        "each setting runs once with the largest k; needs --temperature",
    )
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature of --samples (above 0)")
    parser.add_argument("--top_p", type=float, default=None, help="nucleus sampling of --samples (0 < top_p <= 1)")
    parser.add_argument(
        "--no_log_samples",
        action="store_true",
        help="skip per-item samples files (then no paired tests or item bootstrap later)",
    )
    parser.add_argument("--no_traces", action="store_true", help="do not pass trace_path (models other than m1_budget)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="redo settings whose folder holds another run's results (moved aside, not deleted)",
    )


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    budgets = parse_int_list(args.budgets, "budgets")
    forcings = parse_int_list(args.forcing, "forcing")
    tasks = task_names(args.tasks)
    limit = args.limit
    check_limit(limit)
    if limit is not None and limit >= 1 and limit == int(limit):
        limit = int(limit)
    batch = args.batch_size
    if batch is not None and str(batch).isdigit():
        batch = int(batch)
    ran: list = []
    rows = run_sweep(
        args.model_args,
        tasks,
        budgets,
        forcings,
        args.output_path,
        model=args.model,
        limit=limit,
        batch_size=batch,
        log_samples=not args.no_log_samples,
        gen_kwargs=args.gen_kwargs,
        apply_chat_template=args.apply_chat_template,
        num_fewshot=args.num_fewshot,
        seed=args.seed,
        include_path=args.include_path,
        write_traces=not args.no_traces,
        force=args.force,
        samples=parse_samples(args.samples) if args.samples is not None else None,
        temperature=args.temperature,
        top_p=args.top_p,
        ran=ran,
    )
    out = Path(args.output_path)
    print(f"\n{len(rows)} rows -> {out / 'sweep.csv'} and {out / 'sweep.json'}")
    for row in rows:
        extra = ""
        if row["mean_thinking_tokens"] is not None:
            extra = f"  thinking {row['mean_thinking_tokens']:.0f} tok"
            if row["hit_budget_share"] is not None:
                extra += f", {100 * row['hit_budget_share']:.0f}% hit budget"
        budget = str(row["budget"]) + (f" (ran <={row['ran_budget']})" if row.get("ran_budget") is not None else "")
        if "k" in row:  # a sampled sweep: one line per k
            extra = (
                f"  maj@k={100 * row['maj_at_k']:.2f} pass@k={100 * row['pass_at_k']:.2f} "
                f"mean@k={100 * row['mean_at_k']:.2f}  {row['mean_generated_tokens_per_item']:.0f} tok/item"
            )
            budget += f" k={row['k']}"
        print(
            f"{row['task']:<18} budget={budget:<6} forcing={row['forcing']!s:<3} "
            f"acc={100 * row['acc']:.2f} [{100 * row['ci_low']:.2f}, {100 * row['ci_high']:.2f}] n={row['n']}{extra}",
            file=sys.stdout,
        )
    print(engine_work_line(rows, ran))
    return 0


def engine_work_line(rows: list[dict], ran: list) -> str:
    """m1_budget's engine work of this command only (the settings it ran, their probes included); the
    settings an earlier run finished cost nothing now, and their recorded work stays in sweep.csv."""
    settings = {(r["budget"], r["forcing"]) for r in rows}
    if not ran:
        return (
            f"engine work of this command: none (all {len(settings)} settings were finished by an earlier "
            "run; what that run generated is in sweep.csv)"
        )
    counted = list(
        {
            (r["model"], r["task"], r["budget"], r["forcing"]): r
            for r in rows  # a sampled sweep: k rows
            if (r["budget"], r["forcing"]) in set(ran) and r.get("context_tokens") is not None
        }.values()
    )
    if not counted:  # models other than m1_budget record no engine work
        return f"ran {len(set(ran))} of {len(settings)} settings now (no engine work recorded by this model)"
    note = "" if len(set(ran)) == len(settings) else f" ({len(set(ran))} of {len(settings)} settings run now)"
    return f"engine work of this command{note}: " + ", ".join(f"{k}={sum(r[k] for r in counted)}" for k in TOKEN_COUNTS)
