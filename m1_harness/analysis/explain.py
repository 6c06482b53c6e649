"""``m1-harness explain``: per-item evidence behind the accuracy curves.

    m1-harness explain runs/sweep-m1 runs/sweep-qwen runs/qwen-hf --out explain/

Reads lm-eval output folders of the same items (a sweep: one folder per setting; several models;
lm-eval's own ``hf``/``vllm`` runs, one setting each) with their samples (``--log_samples``) and,
where m1_budget wrote them, the trace records (``traces.jsonl`` beside a sweep's setting folder, or
``m1_traces/`` beside lm-eval's output). Writes to ``--out``:

- ``trajectories.csv``/``.json``: one row per (model, task, item): the answer, right/wrong, thinking
  tokens and budget cut at every setting, the item's class and the budget from which it stays right;
- ``flips.csv``/``.json``: paired comparisons (neighbouring settings, first to last of each axis,
  model against model) with McNemar's exact p and Holm's correction over each task's comparisons;
- ``settings.csv``: accuracy among items whose thinking ended on its own and among items the budget
  cut, the share cut, mean thinking tokens and thinking tokens per right answer;
- ``efficiency.png`` (accuracy against the actual mean thinking tokens), ``flips_<task>.png``;
- ``viewer.html``: the trace viewer (``viewer.py``); ``summary.txt``: the sentences printed.

Flips pair each model's settings along each axis (budget b to the next at one forcing, forcing k to
the next at one budget, and the first to the last when there are more than two), and models on the
same task at every setting they share (or, sharing none, at each one's largest: an lm-eval ``hf``
baseline against a sweep). Holm's correction runs over all comparisons of a task. The summary
sentences give, per task and model, the whole budget axis at each forcing, the whole forcing axis
at the largest budget, and every model pair. Multiple-choice runs of lm-eval's own tasks
(log-likelihood per option) count the best option as the answer.

Classes compare settings that are ordered: setting s precedes t when t has at least s's budget and at
least its forcing rounds (runs without a budget are compared with nothing). An item is *helped* when
some s precedes some t with s wrong and t right, *hurt* when s right and t wrong, *unstable* when
both (its answer changes more than once along some chain) or when its answer differs only between
unordered settings; otherwise always right or always wrong.
"""

from __future__ import annotations

import csv
import json
import sys
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt

from .figures import DPI, finish, grid, legend_below, model_colours, panel_title, save, task_order
from .outcomes import Run, by_model_task, load_runs, precedes
from .results import sortable
from .stats import holm, mcnemar_exact
from .viewer import write_viewer

FLIP_FIELDS = [
    "task",
    "model",
    "axis",
    "neighbours",
    "from",
    "to",
    "n",
    "stayed_right",
    "wrong_to_right",
    "right_to_wrong",
    "stayed_wrong",
    "acc_from",
    "acc_to",
    "p",
    "p_holm",
    "at",
]
SETTING_FIELDS = [
    "model",
    "task",
    "setting",
    "budget",
    "forcing",
    "n",
    "right",
    "acc",
    "with_trace",
    "cut",
    "share_cut",
    "acc_ended",
    "acc_cut",
    "mean_thinking_tokens",
    "thinking_tokens_per_right",
]


# -- 1. trajectories ----------------------------------------------------------------------------------
def classify(runs: list[Run], doc_id) -> str:
    """The item's class from its right/wrong at each setting (see the module docstring)."""
    have = [r for r in runs if doc_id in r.outcomes]
    right = {id(r): r.outcomes[doc_id].correct for r in have}
    if all(right.values()):
        return "always right"
    if not any(right.values()):
        return "always wrong"
    helped = any(precedes(a, b) and not right[id(a)] and right[id(b)] for a in have for b in have)
    hurt = any(precedes(a, b) and right[id(a)] and not right[id(b)] for a in have for b in have)
    if helped and not hurt:
        return "helped by thinking"
    if hurt and not helped:
        return "hurt by thinking"
    return "unstable"


def settled_budget(runs: list[Run], doc_id):
    """The smallest budget from which the item is right at every setting (None if it never settles)."""
    budgets = sorted({r.budget for r in runs if r.budget is not None and doc_id in r.outcomes}, key=sortable)
    settled = None
    for b in reversed(budgets):
        if all(r.outcomes[doc_id].correct for r in runs if doc_id in r.outcomes and sortable(r.budget) >= sortable(b)):
            settled = b
        else:
            break
    return settled


def trajectories(runs: list[Run]) -> list[dict]:
    rows = []
    for (model, task), group in by_model_task(runs).items():
        doc_ids = sorted({d for r in group for d in r.outcomes}, key=sortable)
        for doc_id in doc_ids:
            doc, gold = next(r.docs[doc_id] for r in group if doc_id in r.docs)
            settings = []
            for r in group:
                o = r.outcomes.get(doc_id)
                if o is None:
                    continue
                settings.append(
                    {
                        "setting": r.label,
                        "budget": r.budget,
                        "forcing": r.forcing,
                        "letter": o.letter,
                        "method": o.method,
                        "correct": o.correct,
                        "thinking_tokens": o.thinking_tokens,
                        "hit_budget": o.hit_budget,
                    }
                )
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "doc_id": doc_id,
                    "item": doc.get("id", doc_id),
                    "gold": gold,
                    "class": classify(group, doc_id),
                    "settled_budget": settled_budget(group, doc_id),
                    "settings": settings,
                }
            )
    return rows


def write_trajectories(rows: list[dict], out: Path) -> None:
    (out / "trajectories.json").write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    labels = []
    for row in rows:
        for s in row["settings"]:
            if s["setting"] not in labels:
                labels.append(s["setting"])
    with open(out / "trajectories.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["model", "task", "doc_id", "item", "gold", "class", "settled_budget"]
            + [f"{lab}: {part}" for lab in labels for part in ("letter", "method", "correct", "thinking_tokens", "cut")]
        )
        for row in rows:
            by = {s["setting"]: s for s in row["settings"]}
            cells = []
            for lab in labels:
                s = by.get(lab)
                cells += (
                    [
                        s["letter"],
                        s["method"],
                        int(s["correct"]),
                        s["thinking_tokens"],
                        "" if s["hit_budget"] is None else int(s["hit_budget"]),
                    ]
                    if s
                    else [""] * 5
                )
            w.writerow(
                [
                    row["model"],
                    row["task"],
                    row["doc_id"],
                    row["item"],
                    row["gold"],
                    row["class"],
                    "" if row["settled_budget"] is None else row["settled_budget"],
                ]
                + cells
            )


# -- 2. flips -----------------------------------------------------------------------------------------
def _compare(task, model, axis, neighbours, a: Run, b: Run, frm: str, to: str) -> dict:
    common = sorted(set(a.outcomes) & set(b.outcomes), key=sortable)
    x = [a.outcomes[d].correct for d in common]
    y = [b.outcomes[d].correct for d in common]
    test = mcnemar_exact(x, y)
    both = sum(1 for i, j in zip(x, y) if i and j)
    return {
        "task": task,
        "model": model,
        "axis": axis,
        "neighbours": neighbours,
        "from": frm,
        "to": to,
        "n": test.n,
        "stayed_right": both,
        "wrong_to_right": test.b_only,
        "right_to_wrong": test.a_only,
        "stayed_wrong": test.n - both - test.a_only - test.b_only,
        "acc_from": test.acc_a,
        "acc_to": test.acc_b,
        "p": test.p_value,
        "p_holm": None,
    }


def _axis_pairs(values: list) -> list[tuple[object, object, bool]]:
    """Neighbouring pairs, then first -> last when that is not a neighbouring pair."""
    pairs = [(values[i], values[i + 1], True) for i in range(len(values) - 1)]
    if len(values) > 2:
        pairs.append((values[0], values[-1], False))
    return pairs


def flips(runs: list[Run]) -> list[dict]:
    """Every comparison of each task, with Holm's correction over that task's comparisons."""
    groups = by_model_task(runs)
    out = []
    for (model, task), group in groups.items():
        at = {(r.budget, r.forcing): r for r in group if r.budget is not None}
        for f in sorted({f for _, f in at}, key=sortable):
            budgets = sorted((b for b, g in at if g == f), key=sortable)
            for b1, b2, nb in _axis_pairs(budgets):
                out.append(
                    _compare(task, model, "budget", nb, at[b1, f], at[b2, f], f"budget {b1}", f"budget {b2}")
                    | {"at": f"forcing {f}"}
                )
        for b in sorted({b for b, _ in at}, key=sortable):
            forcings = sorted((f for g, f in at if g == b), key=sortable)
            for f1, f2, nb in _axis_pairs(forcings):
                out.append(
                    _compare(task, model, "forcing", nb, at[b, f1], at[b, f2], f"forcing {f1}", f"forcing {f2}")
                    | {"at": f"budget {b}"}
                )
    tasks = sorted({t for _, t in groups})
    for task in tasks:
        models = sorted(m for m, t in groups if t == task)
        for m1, m2 in combinations(models, 2):
            g1, g2 = groups[m1, task], groups[m2, task]
            s1 = {(r.budget, r.forcing): r for r in g1}
            s2 = {(r.budget, r.forcing): r for r in g2}
            common = sorted(set(s1) & set(s2), key=lambda k: (sortable(k[0]), sortable(k[1])))
            pairs = [(s1[k], s2[k]) for k in common] or [(g1[-1], g2[-1])]  # else each model's largest setting
            for a, b in pairs:
                at = a.label if a.label == b.label else f"{a.label} vs {b.label}"
                out.append(_compare(task, f"{m1} vs {m2}", "model", False, a, b, m1, m2) | {"at": at})
    for task in tasks:
        family = [row for row in out if row["task"] == task]
        for row, p in zip(family, holm([row["p"] for row in family])):
            row["p_holm"] = p
    return out


def sentence(row: dict) -> str:
    """``medqa, m1-7B, forcing 0 -> 2 (budget 4096): 14 answers turned wrong, 9 turned right, of 100 (McNemar p = 0.40, Holm 1.00)``"""
    if row["axis"] == "model":
        what = f"{row['from']} -> {row['to']} ({row['at']})"
    else:
        what = f"{row['model']}, {row['axis']} {row['from'].split()[-1]} -> {row['to'].split()[-1]} ({row['at']})"
    wrong = row["right_to_wrong"]
    return (
        f"{row['task']}, {what}: {wrong} answer{'' if wrong == 1 else 's'} turned wrong, {row['wrong_to_right']} "
        f"turned right, of {row['n']} (McNemar p = {fmt_p(row['p'])}, Holm {fmt_p(row['p_holm'])})"
    )


def fmt_p(p: float) -> str:
    """Two decimals, or two significant digits below 0.01 (0.00098, not 0.00)."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


def summary_rows(rows: list[dict]) -> list[dict]:
    """The comparisons worth a sentence: per model the whole budget axis at each forcing, the whole
    forcing axis at the largest budget, and every model pair."""
    keep = []
    for (_task, _model, axis, _at), family in _families(rows).items():
        if axis == "model":
            keep += family
            continue
        ends = [r for r in family if not r["neighbours"]] or family  # first -> last (or the one pair)
        keep.append(ends[-1])
    largest_budget = {}  # forcing sentences only at each model's largest budget
    for r in keep:
        if r["axis"] == "forcing":
            largest_budget[r["task"], r["model"]] = r
    return [r for r in keep if r["axis"] != "forcing" or largest_budget[r["task"], r["model"]] is r]


def _families(rows):
    fam: dict[tuple, list[dict]] = {}
    for r in rows:
        fam.setdefault((r["task"], r["model"], r["axis"], r["at"] if r["axis"] != "model" else ""), []).append(r)
    return fam


def write_flips(rows: list[dict], out: Path) -> None:
    (out / "flips.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    with open(out / "flips.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FLIP_FIELDS)
        w.writeheader()
        w.writerows(rows)


# -- 3./4. cut-off-aware accuracy and efficiency ------------------------------------------------------
def setting_rows(runs: list[Run]) -> list[dict]:
    rows = []
    for (model, task), group in by_model_task(runs).items():
        for r in group:
            outs = list(r.outcomes.values())
            traced = [o for o in outs if o.thinking_tokens is not None]
            cut = [o for o in traced if o.hit_budget]
            ended = [o for o in traced if not o.hit_budget]
            right = sum(o.correct for o in outs)
            tokens = sum(o.thinking_tokens for o in traced)
            acc = lambda xs: sum(o.correct for o in xs) / len(xs) if xs else None  # noqa: E731
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "setting": r.label,
                    "budget": r.budget,
                    "forcing": r.forcing,
                    "n": len(outs),
                    "right": right,
                    "acc": acc(outs),
                    "with_trace": len(traced),
                    "cut": len(cut),
                    "share_cut": len(cut) / len(traced) if traced else None,
                    "acc_ended": acc(ended),
                    "acc_cut": acc(cut),
                    "mean_thinking_tokens": tokens / len(traced) if traced else None,
                    # over the traced items only, so a partial trace file does not deflate it
                    "thinking_tokens_per_right": tokens / sum(o.correct for o in traced)
                    if traced and any(o.correct for o in traced)
                    else None,
                }
            )
    return rows


def write_settings(rows: list[dict], out: Path) -> None:
    with open(out / "settings.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SETTING_FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})


# -- 4./5. figures ------------------------------------------------------------------------------------
def figure_efficiency(rows: list[dict]):
    """Accuracy against the actual mean thinking tokens, one line per (model, forcing), points labelled
    with their budget; None when no setting has trace records."""
    colours = model_colours(r["model"] for r in rows)  # over every model, as `plot` does: the same colours
    rows = [r for r in rows if r["mean_thinking_tokens"] is not None]
    if not rows:
        return None
    tasks = task_order(r["task"] for r in rows)
    fig, axes = grid(len(tasks))
    styles = ["-o", "--s", ":^", "-.D"]
    for ax, task in zip(axes, tasks):
        lines = {}
        for r in rows:
            if r["task"] == task:
                lines.setdefault((r["model"], r["forcing"]), []).append(r)
        mine = [r for pts in lines.values() for r in pts]
        span_x = (max(r["mean_thinking_tokens"] for r in mine) - min(r["mean_thinking_tokens"] for r in mine)) or 1.0
        span_y = (max(r["acc"] for r in mine) - min(r["acc"] for r in mine)) * 100 or 1.0
        placed: list[tuple] = []  # (text, x, y) of labels already in this panel
        for (model, forcing), pts in sorted(lines.items(), key=lambda kv: (kv[0][0], sortable(kv[0][1]))):
            pts.sort(key=lambda r: r["mean_thinking_tokens"])
            xs = [p["mean_thinking_tokens"] for p in pts]
            ys = [100 * p["acc"] for p in pts]
            forcings = sorted({f for m, f in lines if m == model}, key=sortable)
            ax.plot(
                xs,
                ys,
                styles[forcings.index(forcing) % len(styles)],
                color=colours[model],
                ms=4,
                label=f"{model}, forcing {forcing}",
            )
            labels: dict[tuple, list[str]] = {}  # budgets at one point (a model that never thinks) share a label
            for x, y, p in zip(xs, ys, pts):
                labels.setdefault((round(x, 1), round(y, 3)), []).append(str(p["budget"]))
            for (x, y), budgets in labels.items():
                text = "/".join(budgets)
                if any(
                    t == text and abs(x - px) < 0.03 * span_x and abs(y - py) < 0.03 * span_y for t, px, py in placed
                ):
                    continue  # another series' point of the same budget lies here: one label reads, two overprint
                placed.append((text, x, y))
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.set_title(panel_title(task), fontsize=9)
        ax.set_xlabel("actual mean thinking tokens", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.margins(x=0.08, y=0.1)  # room for the budget labels of the outermost points
    finish(fig, axes, axes, "Accuracy against the thinking actually done (points: budget)", ncol=3, fontsize=8)
    return fig


FLIP_PARTS = (
    ("stayed_right", "stayed right", "#4c9a5b"),
    ("wrong_to_right", "turned right", "#9bd19f"),
    ("right_to_wrong", "turned wrong", "#f08a6c"),
    ("stayed_wrong", "stayed wrong", "#b5474b"),
)


def figure_flips(rows: list[dict], task: str):
    """Stacked bars per neighbouring pair of one task: stayed right / turned right / turned wrong / stayed wrong."""
    pairs = [r for r in rows if r["task"] == task and r["neighbours"]]
    if not pairs:
        return None
    labels = [f"{r['model']}\n{r['axis']} {r['from'].split()[-1]} -> {r['to'].split()[-1]} ({r['at']})" for r in pairs]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(pairs)), dpi=DPI, layout="constrained")
    left = [0.0] * len(pairs)
    for key, name, colour in FLIP_PARTS:
        vals = [r[key] for r in pairs]
        ax.barh(range(len(pairs)), vals, left=left, color=colour, label=name)
        for i, v in enumerate(vals):
            if v:
                ax.text(left[i] + v / 2, i, str(v), ha="center", va="center", fontsize=7)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(pairs)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("items", fontsize=8)
    ax.set_title(f"{task}: what each step of thinking did to each item", fontsize=10)
    legend_below(fig, *ax.get_legend_handles_labels(), ncol=4, fontsize=7)
    return fig


# -- the command --------------------------------------------------------------------------------------
def explain(paths, out: Path | None, metric: str = "acc") -> dict:
    """Everything the command computes; writes the files when ``out`` is given."""
    runs = load_runs(paths, metric)
    result = {"trajectories": trajectories(runs), "flips": flips(runs), "settings": setting_rows(runs)}
    result["sentences"] = [sentence(r) for r in summary_rows(result["flips"])]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_trajectories(result["trajectories"], out)
        write_flips(result["flips"], out)
        write_settings(result["settings"], out)
        (out / "summary.txt").write_text("\n".join(result["sentences"]) + "\n", encoding="utf-8")
        fig = figure_efficiency(result["settings"])
        if fig is not None:
            save(fig, out, "efficiency", ["png"])
        for task in sorted({r.task for r in runs}):
            fig = figure_flips(result["flips"], task)
            if fig is not None:
                save(fig, out, f"flips_{task}", ["png"])
        write_viewer(runs, result["trajectories"], out / "viewer.html")
    return result


def add_arguments(parser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUNS",
        help="lm-eval output folders (with --log_samples), results_*.json files or globs",
    )
    parser.add_argument(
        "--out", metavar="DIR", default="explain", help="folder for the tables, figures and viewer.html"
    )
    parser.add_argument("--json", action="store_true", help="print the flips as JSON instead of sentences")
    parser.add_argument("--metric", default="acc", help="per-item metric that says right or wrong (default acc)")


def run(args) -> int:
    result = explain(args.runs, Path(args.out), args.metric)  # an ExplainError is printed by m1-harness
    if args.json:
        print(json.dumps(result["flips"], indent=1))
    else:
        print("\n".join(result["sentences"]))
        print(f"tables, figures and viewer.html in {args.out}", file=sys.stderr)
    return 0
