"""Thinking longer or sampling again, at matched compute: accuracy against the mean tokens the model
decoded per item, for three ways of spending them (written by ``m1-harness plot``):

- the budget sweep: one sample (k = 1) at each thinking budget, at the model's fewest forcing rounds;
- the forcing sweep: one sample at each forcing setting of a budget that has several;
- majority voting: maj@k over the first k samples (k = 1, 2, 4, ... up to those drawn) at each budget
  of a sampled run (``m1-harness sweep --samples``), at the fewest forcing rounds.

Accuracy is maj@k (at k = 1 lm-eval's own accuracy of sample 0) with Wilson's 95% interval over
items; tokens are ``sampled.decoded_tokens`` summed over the k samples, averaged over items. A point
is on the Pareto frontier of its (task, model) when no other point reaches at least its accuracy
with at most its tokens (and is better in one). Files: ``compute_matched.{png,pdf}`` (a panel per
task) and ``compute_matched.md`` / ``.csv`` (every point, ``pareto`` marked).
"""

from __future__ import annotations

import csv
import io
import logging

import numpy as np

from .figures import MARKERS, clip_percent, finish, grid, panel_title, shade, task_order
from .results import TaskResult, display_name
from .sampled import NoTraceRecords, default_ks, k_rows, sampled_outcomes

log = logging.getLogger(__name__)

POINT_FIELDS = [
    "model",
    "task",
    "budget",
    "forcing",
    "k",
    "samples",
    "n",
    "mean_generated_tokens_per_item",
    "accuracy",
    "ci_low",
    "ci_high",
    "series",
    "pareto",
]


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compute_points(results: list[TaskResult]) -> list[dict]:
    """One point per (model, task, budget, forcing, k) of the runs with trace records (see the module
    docstring); runs without them (lm-eval's own models) are left out."""
    runs: dict[tuple, dict] = {}  # (model, task) -> (budget, forcing) -> [k rows]
    cache: dict = {}
    for r in results:
        if not _numeric(r.budget):
            continue
        try:
            outcomes = sampled_outcomes(r, cache)
        except NoTraceRecords as exc:
            log.info("compute-matched figure: leaving out %s", exc)
            continue
        drawn = len(next(iter(outcomes.values())))
        rows = k_rows(outcomes, default_ks(drawn))
        runs.setdefault((r.model, r.task), {})[(r.budget, r.forcing or 0)] = [
            dict(row, n=len(outcomes)) for row in rows
        ]
    points = []
    for (model, task), settings in sorted(runs.items()):
        base = min(f for _, f in settings)
        budgets = sorted({b for b, _ in settings})
        forcings = {b: sorted(f for bb, f in settings if bb == b) for b in budgets}
        mine = []
        for (budget, forcing), rows in sorted(settings.items()):
            for row in rows:
                series = []
                if row["k"] == 1 and forcing == base:
                    series.append("budget")
                if row["k"] == 1 and len(forcings[budget]) > 1:
                    series.append(f"forcing@{budget}")
                if forcing == base and row["samples"] > 1:
                    series.append(f"vote@{budget}")
                if not series:
                    continue
                mine.append(
                    {
                        "model": model,
                        "task": task,
                        "budget": budget,
                        "forcing": forcing,
                        "k": row["k"],
                        "samples": row["samples"],
                        "n": row["n"],
                        "mean_generated_tokens_per_item": row["mean_generated_tokens_per_item"],
                        "accuracy": row["maj_at_k"],
                        "ci_low": row["maj_ci_low"],
                        "ci_high": row["maj_ci_high"],
                        "series": " ".join(series),
                    }
                )
        for p in mine:
            p["pareto"] = not any(_dominates(q, p) for q in mine)
        points += mine
    return points


def _dominates(q: dict, p: dict) -> bool:
    tq, tp = q["mean_generated_tokens_per_item"], p["mean_generated_tokens_per_item"]
    return tq <= tp and q["accuracy"] >= p["accuracy"] and (tq < tp or q["accuracy"] > p["accuracy"])


def to_csv(points: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=POINT_FIELDS, lineterminator="\n")
    w.writeheader()
    for p in points:
        w.writerow({k: p[k] for k in POINT_FIELDS})
    return buf.getvalue()


def to_markdown(points: list[dict]) -> str:
    """A table per (task, model), cheapest first; frontier points in bold."""
    out = []
    for key in sorted({(p["task"], p["model"]) for p in points}):
        rows = sorted(
            (p for p in points if (p["task"], p["model"]) == key),
            key=lambda p: (p["mean_generated_tokens_per_item"], -p["accuracy"]),
        )
        out += [
            f"### {key[0]}: {display_name(key[1])} (n={rows[0]['n']})",
            "",
            "| budget | forcing | k | tokens per item | accuracy (%) | 95% Wilson | series | Pareto |",
            "|---:|---:|---:|---:|---:|---|---|:---:|",
        ]
        for p in rows:
            acc = f"{100 * p['accuracy']:.1f}"
            if p["pareto"]:
                acc = f"**{acc}**"
            out.append(
                f"| {p['budget']} | {p['forcing']} | {p['k']} | {p['mean_generated_tokens_per_item']:.1f} | {acc} | "
                f"[{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}] | {p['series']} | {'yes' if p['pareto'] else ''} |"
            )
        out.append("")
    return "\n".join(out)


def figure_compute_matched(points: list[dict], colours: dict):
    """A panel per task; per model: the budget sweep (solid), forcing sweeps (dashed), voting curves
    (dotted, one per budget), and its Pareto frontier (black steps through ringed points). A model's
    series share its colour in shades, each with its own marker. Every line
    has a gid (``budget:<model>``, ``forcing@<b>:<model>``, ``vote@<b>:<model>``, ``pareto:<model>``)
    and its points are (tokens, accuracy %)."""
    tasks = task_order({p["task"] for p in points})
    if not tasks:
        return None
    fig, axes = grid(len(tasks))
    styles = {"budget": "-", "forcing": "--", "vote": ":"}
    for ax, task in zip(axes, tasks):
        for model in sorted({p["model"] for p in points if p["task"] == task}):
            mine = [p for p in points if p["task"] == task and p["model"] == model]
            names = sorted(
                {s for p in mine for s in p["series"].split()}, key=lambda s: (s.split("@")[0] != "budget", s)
            )
            for i, name in enumerate(names):
                colour = shade(colours[model], i, len(names))
                pts = sorted(
                    (p for p in mine if name in p["series"].split()), key=lambda p: p["mean_generated_tokens_per_item"]
                )
                kind = name.split("@")[0]
                x = np.array([p["mean_generated_tokens_per_item"] for p in pts])
                y = np.array([100 * p["accuracy"] for p in pts])
                err = [y - [100 * p["ci_low"] for p in pts], [100 * p["ci_high"] for p in pts] - y]
                what = {
                    "budget": "budget sweep",
                    "forcing": f"forcing at budget {name[8:]}",
                    "vote": f"maj@k at budget {name[5:]}",
                }[kind]
                cont = ax.errorbar(
                    x,
                    y,
                    yerr=err,
                    linestyle=styles[kind],
                    marker=MARKERS[i % len(MARKERS)],
                    color=colour,
                    capsize=2,
                    linewidth=1.3,
                    markersize=4,
                    alpha=0.9,
                    label=f"{display_name(model)}: {what}",
                )
                cont.lines[0].set_gid(f"{name}:{model}")
                if kind == "vote":
                    for p, xi, yi in zip(pts, x, y):
                        ax.annotate(
                            f"k={p['k']}",
                            (xi, yi),
                            textcoords="offset points",
                            xytext=(3, -9),
                            fontsize=7,
                            color=colour,
                        )
            front = sorted((p for p in mine if p["pareto"]), key=lambda p: p["mean_generated_tokens_per_item"])
            (line,) = ax.plot(
                [p["mean_generated_tokens_per_item"] for p in front],
                [100 * p["accuracy"] for p in front],
                drawstyle="steps-post",
                color="black",
                linewidth=1.0,
                marker="o",
                markersize=9,
                markerfacecolor="none",
                label="Pareto frontier",
            )
            line.set_gid(f"pareto:{model}")
        ax.set_xscale("log", base=2)
        ax.set_title(panel_title(task), fontsize=11)
        ax.set_xlabel("mean generated tokens per item (all k samples)")
        ax.set_ylabel("accuracy (%)")
        clip_percent(ax)
        ax.grid(alpha=0.3)
    finish(
        fig,
        axes,
        axes,
        "Accuracy at matched compute: thinking longer, forcing, or voting over k samples\n"
        "(error bars: 95% Wilson intervals over items; ringed: Pareto frontier)",
        ncol=2,
    )
    return fig
