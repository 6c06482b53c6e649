"""``m1-harness plot RESULTS... --out DIR``: the paper's Figure 1 and Figure 3 from lm-eval results.

- ``figure1_budget.{png,pdf}``: one panel per benchmark, accuracy (%) against the thinking budget, one
  line per model and forcing level (forcing 0 in the model's colour, further levels in shades of it),
  95% interval per point as error bars, and a dotted OLS regression line with its t-based 95% band. ``--scale log2`` puts the budget on
  a log2 axis and fits the regression against log2(budget), so the fitted line stays straight.
- ``figure3_forcing.{png,pdf}``: one panel per benchmark, accuracy against budget-forcing rounds
  (0 = the first answer taken), one line per (model, budget) with more than one forcing setting.
- ``compute_matched.{png,pdf}`` with ``compute_matched.md`` / ``.csv``: accuracy against mean generated
  tokens per item for the budget sweep, the forcing sweep and majority voting over k samples, the
  Pareto frontier marked (``compute_matched.py``; runs with m1_budget's trace records).
- ``thinking_lengths.{png,pdf}``: a histogram of thinking tokens per model, from trace JSONL files
  (``--traces 'runs/**/traces*.jsonl'``), the budget-hit share in the legend.

Each model keeps its colour across all figures; the layout (200 dpi, legend within the canvas,
readable ticks) is ``figures.py``'s. The plotted numbers live in the figure: every data
line has ``gid`` ``"acc:<model>"`` (further forcing levels ``"acc:<model>|forcing <f>"``; x, y in %;
``line.m1_interval`` holds (low, high) per point),
every regression line ``"ols:<model>"`` and every band ``"band:<model>"``, so they can be read back
with ``ax.lines`` / ``line.get_xydata()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from m1_harness.errors import UserError
from m1_harness.paths import atomic_write_text, ensure_writable_dir

from .compute_matched import compute_points, figure_compute_matched, to_csv, to_markdown
from .figures import (
    LINESTYLES,
    MARKERS,
    clip_percent,
    finish,
    grid,
    model_colours,
    panel_title,
    save,
    shade,
    task_order,
)
from .results import TaskResult, display_name, load_results, load_traces, sortable
from .stats import ols_fit, proportion_interval

FORMATS = {"png", "pdf", "svg"}


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _interval(r: TaskResult, ci: str, seed: int, iters: int):
    lo, hi = proportion_interval(r.acc, r.n, ci, list(r.items.values()) or None, iters=iters, seed=seed)
    return 100 * lo, 100 * hi


def _draw_series(ax, xs, accs, intervals, colour, label, model, scale, regression=True, marker="o"):
    """Points with error bars plus (with 2+ points) a dotted OLS line and (with 3+) its 95% band."""
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(accs, dtype=float)
    lows = np.array([i[0] for i in intervals])
    highs = np.array([i[1] for i in intervals])
    cont = ax.errorbar(
        xs,
        ys,
        yerr=[ys - lows, highs - ys],
        fmt=f"{marker}-",
        color=colour,
        label=label,
        capsize=3,
        linewidth=1.6,
        markersize=5,
    )
    line = cont.lines[0]
    line.set_gid(f"acc:{model}")
    line.m1_interval = list(zip(lows.tolist(), highs.tolist()))
    if not regression or len(np.unique(xs)) < 2:
        return line
    fx = np.log2(xs) if scale == "log2" else xs
    fit = ols_fit(fx, ys)
    grid_f = np.linspace(fx.min(), fx.max(), 100)
    grid_x = np.exp2(grid_f) if scale == "log2" else grid_f
    (ols_line,) = ax.plot(grid_x, fit.predict(grid_f), linestyle=":", color=colour, linewidth=1.4)
    ols_line.set_gid(f"ols:{model}")
    ols_line.m1_fit = fit
    lo, hi = fit.band(grid_f)
    if np.isfinite(lo).all():
        band = ax.fill_between(grid_x, lo, hi, color=colour, alpha=0.12, linewidth=0)
        band.set_gid(f"band:{model}")
    return line


def figure_budget(
    results: list[TaskResult],
    scale: str = "linear",
    ci: str = "wilson",
    seed: int = 0,
    iters: int = 10000,
    colours: dict | None = None,
):
    """Figure 1: accuracy against thinking budget, a panel per benchmark, a line per (model, forcing).

    A model's fewest forcing rounds (0 as in the paper) is drawn in its colour with round markers
    (gid ``acc:<model>``); each further forcing level in a shade of it with its own marker (gid
    ``acc:<model>|forcing <f>``). Labels name the forcing wherever it is not 0 alone.
    """
    forcings: dict[str, list] = {}
    for r in results:
        if _numeric(r.budget):
            forcings.setdefault(r.model, set()).add(r.forcing or 0)
    forcings = {m: sorted(fs) for m, fs in forcings.items()}
    pts: dict[str, dict[tuple, list[TaskResult]]] = {}
    for r in results:
        if _numeric(r.budget):
            pts.setdefault(r.task, {}).setdefault((r.model, r.forcing or 0), []).append(r)
    tasks = task_order(pts)
    if not tasks:
        return None
    colours = colours or model_colours(r.model for r in results)
    fig, axes = grid(len(tasks))
    for ax, task in zip(axes, tasks):
        for model, forcing in sorted(pts[task]):
            rs = sorted(pts[task][model, forcing], key=lambda r: r.budget)
            levels = forcings[model]
            i = levels.index(forcing)
            named = levels != [0]
            _draw_series(
                ax,
                [r.budget for r in rs],
                [100 * r.acc for r in rs],
                [_interval(r, ci, seed, iters) for r in rs],
                shade(colours[model], i, len(levels)),
                display_name(model) + (f" (forcing {forcing})" if named else ""),
                model if i == 0 else f"{model}|forcing {forcing}",
                scale,
                marker=MARKERS[i % len(MARKERS)],
            )
        ax.set_title(panel_title(task), fontsize=11)
        ax.set_xlabel("thinking budget (tokens)")
        ax.set_ylabel("accuracy (%)")
        if scale == "log2":
            ax.set_xscale("log", base=2)
        budgets = sorted({r.budget for rs in pts[task].values() for r in rs})
        ran = {}  # budget -> the largest budget that really ran, where the context clamped it
        for rs in pts[task].values():
            for r in rs:
                if r.ran_budget is not None:
                    ran[r.budget] = max(ran.get(r.budget, 0), r.ran_budget)
        ax.set_xticks(budgets)
        ax.set_xticklabels([_k(b) + (f"\n(ran ≤{ran[b]})" if b in ran else "") for b in budgets])
        clip_percent(ax)
        ax.grid(alpha=0.3)
    finish(
        fig,
        axes,
        axes,
        f"Accuracy vs thinking budget\n(error bars: 95% {_ci_name(ci)} intervals; dotted: OLS fit with 95% band)",
    )
    return fig


def figure_forcing(
    results: list[TaskResult], ci: str = "wilson", seed: int = 0, iters: int = 10000, colours: dict | None = None
):
    """Figure 3: accuracy against budget-forcing rounds, a line per (model, budget): the model's colour
    (shaded), marker and line style tell its budgets apart."""
    pts: dict[str, dict[tuple, list[TaskResult]]] = {}
    for r in results:
        if _numeric(r.forcing) and r.budget is not None:
            pts.setdefault(r.task, {}).setdefault((r.model, r.budget), []).append(r)
    pts = {t: {k: v for k, v in d.items() if len({r.forcing for r in v}) > 1} for t, d in pts.items()}
    pts = {t: d for t, d in pts.items() if d}
    tasks = task_order(pts)
    if not tasks:
        return None
    colours = colours or model_colours(r.model for r in results)
    budgets_all = sorted({k[1] for d in pts.values() for k in d}, key=sortable)
    budgets_of: dict[str, list] = {}  # model -> its budgets with a forcing line, in any panel
    for d in pts.values():
        for m, b in d:
            budgets_of.setdefault(m, []).append(b)
    budgets_of = {m: sorted(set(bs), key=sortable) for m, bs in budgets_of.items()}
    fig, axes = grid(len(tasks))
    for ax, task in zip(axes, tasks):
        for model, budget in sorted(pts[task], key=lambda k: (k[0], sortable(k[1]))):
            rs = sorted(pts[task][(model, budget)], key=lambda r: r.forcing)
            label = display_name(model) + (f" (budget {budget})" if len(budgets_all) > 1 else "")
            i, n = budgets_of[model].index(budget), len(budgets_of[model])
            line = _draw_series(
                ax,
                [r.forcing for r in rs],
                [100 * r.acc for r in rs],
                [_interval(r, ci, seed, iters) for r in rs],
                shade(colours[model], i, n),
                label,
                model,
                "linear",
                regression=False,
                marker=MARKERS[i % len(MARKERS)],
            )
            line.set_linestyle(LINESTYLES[i % len(LINESTYLES)])
        ax.set_title(panel_title(task), fontsize=11)
        ax.set_xlabel("budget-forcing rounds")
        ax.set_ylabel("accuracy (%)")
        rounds = sorted({r.forcing for rs in pts[task].values() for r in rs})
        ax.set_xticks(rounds)
        clip_percent(ax)
        ax.grid(alpha=0.3)
    only = f" within a {_k(budgets_all[0])}-token budget" if len(budgets_all) == 1 else ""
    finish(fig, axes, axes, f"Accuracy vs budget-forcing rounds{only}\n(error bars: 95% {_ci_name(ci)} intervals)")
    return fig


def figure_thinking_lengths(traces: dict[str, list[dict]], colours: dict | None = None, bins: int = 30):
    """A histogram of thinking tokens per model (one panel each), budget-hit share in the title.

    When a model's records come from several budgets (a sweep), the panel shows the largest budget's
    records: the thinking lengths the model reaches when least constrained."""
    models = sorted(traces)
    if not models:
        return None
    colours = colours or model_colours(models)
    fig, axes = grid(len(models))
    for ax, model in zip(axes, models):
        recs, budget = _largest_budget(traces[model])
        tokens = np.array([float(r["thinking_tokens"]) for r in recs])
        hits = [bool(r.get("hit_budget")) for r in recs if "hit_budget" in r]
        colour = colours.get(model) or model_colours(models)[model]
        ax.hist(tokens, bins=bins, color=colour, alpha=0.8, edgecolor="white")
        ax.axvline(tokens.mean(), color="black", linestyle="--", linewidth=1)
        share = f", {100 * sum(hits) / len(hits):.0f}% hit the budget" if hits else ""
        at = f" at budget {budget}" if budget is not None else ""
        ax.set_title(
            f"{display_name(model)}{at}\nmean {tokens.mean():.0f} tokens (n={len(tokens)}){share}", fontsize=10
        )
        ax.set_xlabel("thinking tokens")
        ax.set_ylabel("requests")
        ax.grid(alpha=0.3)
    fig.suptitle("Thinking length per request (dashed: mean)", fontsize=11)
    return fig


def _largest_budget(recs: list[dict]):
    budgets = {r.get("requested_thinking_budget") for r in recs}
    numeric = sorted(b for b in budgets if _numeric(b))
    if len(budgets) <= 1 or not numeric:
        return recs, None
    top = numeric[-1]
    return [r for r in recs if r.get("requested_thinking_budget") == top], top


def _k(b) -> str:
    return f"{b // 1024}K" if _numeric(b) and b >= 1024 and b % 1024 == 0 else str(b)


def _ci_name(ci: str) -> str:
    return "Wilson" if ci == "wilson" else "bootstrap"


def add_arguments(parser) -> None:
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS", help="lm-eval output folders, results_*.json files or globs"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument(
        "--scale",
        choices=["linear", "log2"],
        default="linear",
        help="budget axis of Figure 1 (log2 also fits the regression on log2(budget))",
    )
    parser.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg (default png,pdf)")
    parser.add_argument(
        "--traces",
        action="append",
        default=[],
        metavar="GLOB",
        help="trace JSONL files written by m1_budget (repeatable; quote globs)",
    )
    parser.add_argument("--ci", choices=["wilson", "bootstrap"], default="wilson")
    parser.add_argument("--bootstrap_iters", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = sorted(set(formats) - FORMATS)
    if bad or not formats:
        raise UserError(f"--format {args.format!r}: choose from {', '.join(sorted(FORMATS))} (comma-separated)")
    ensure_writable_dir(args.out, "--out")
    results = load_results(args.results)
    traces = load_traces(args.traces) if args.traces else {}
    if not results and not traces:
        print(f"no lm-eval results found under: {' '.join(args.results)}", file=sys.stderr)
        return 1
    colours = model_colours([r.model for r in results] + list(traces))
    out = Path(args.out)
    written = []
    fig = figure_budget(results, args.scale, args.ci, args.seed, args.bootstrap_iters, colours)
    if fig is not None:
        written += save(fig, out, "figure1_budget", formats)
    else:
        print("Figure 1 skipped: no runs with a numeric thinking budget", file=sys.stderr)
    fig = figure_forcing(results, args.ci, args.seed, args.bootstrap_iters, colours)
    if fig is not None:
        written += save(fig, out, "figure3_forcing", formats)
    else:
        print("Figure 3 skipped: no model has runs at two or more forcing settings of one budget", file=sys.stderr)
    points = compute_points(results)
    if points:
        written += save(figure_compute_matched(points, colours), out, "compute_matched", formats)
        for name, text in (("compute_matched.csv", to_csv(points)), ("compute_matched.md", to_markdown(points))):
            atomic_write_text(out / name, text)
            written.append(out / name)
    else:
        print("compute-matched figure skipped: no m1_budget runs with trace records", file=sys.stderr)
    if args.traces:
        fig = figure_thinking_lengths(traces, colours)
        if fig is not None:
            written += save(fig, out, "thinking_lengths", formats)
        else:
            print(f"thinking-length histogram skipped: no trace records in {args.traces}", file=sys.stderr)
    for p in written:
        print(p)
    return 0
