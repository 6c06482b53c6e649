"""``m1-harness report RESULTS...``: the paper's Table 1 layout from lm-eval result folders.

One row per setting (model, thinking budget, forcing rounds); columns MedMC MedQA PubMed MMLU-P GPQA
Lancet MedB4 MedB5 MedX NEJM Avg. Cells are accuracy in % with a 95% interval (Wilson by default,
``--ci bootstrap`` for a seeded percentile bootstrap over the logged items). Avg. is the plain mean of
the benchmarks present in that row; a note under the table names the missing ones. ``--reference``
adds the paper's published rows; ``--paired`` adds McNemar's exact test between neighbouring budgets
(and forcing rounds) of the same model on the same items (needs ``--log_samples`` runs).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from m1_harness.paths import atomic_write_text, ensure_writable_dir

from .results import TaskResult, display_name, load_results, sortable
from .stats import mcnemar_exact, proportion_interval

COLUMNS = ["MedMC", "MedQA", "PubMed", "MMLU-P", "GPQA", "Lancet", "MedB4", "MedB5", "MedX", "NEJM"]
AVG = "Avg."

# column -> task names, the project's own first (it wins when a run has both)
COLUMN_TASKS = {
    "MedMC": ["m1_medmcqa", "medmcqa"],
    "MedQA": ["medqa", "medqa_4options"],
    "PubMed": ["m1_pubmedqa", "pubmedqa"],
    "MMLU-P": ["m1_mmlu_pro_med"],
    "GPQA": ["m1_gpqa_med"],
    "Lancet": ["lancet"],
    "MedB4": ["medbullets4"],
    "MedB5": ["medbullets5"],
    "MedX": ["medxpertqa"],
    "NEJM": ["nejm"],
}
TASK_COLUMN = {t: c for c, ts in COLUMN_TASKS.items() for t in ts}

# Table 1 of the m1 paper (arXiv 2504.00869), accuracy %, selected rows (M1_REFERENCE.md).
PAPER_TABLE1 = {
    "Qwen2.5-7B-Instruct": [56.56, 61.51, 71.30, 61.17, 42.56, 61.17, 46.75, 40.58, 12.15, 59.04, 51.28],
    "Qwen2.5-7B-Instruct +CoT": [56.11, 64.49, 72.60, 62.15, 52.56, 60.68, 50.97, 42.86, 13.18, 58.54, 53.41],
    "HuatuoGPT-o1-8B": [63.97, 74.78, 80.10, 63.71, 55.38, 64.32, 58.44, 51.95, 16.84, 64.84, 59.43],
    "UltraMedical-8B-3.1": [63.78, 75.73, 79.20, 64.30, 48.72, 67.23, 64.61, 55.19, 17.39, 66.83, 60.30],
    "m1-7B-1K": [58.26, 71.01, 77.50, 65.15, 51.79, 64.32, 58.77, 51.95, 16.29, 62.52, 57.76],
    "m1-7B-23K": [62.54, 75.81, 75.80, 65.86, 53.08, 62.62, 63.64, 59.74, 19.81, 64.34, 60.32],
    "Qwen2.5-32B-Instruct": [64.83, 75.26, 68.00, 74.72, 63.85, 66.02, 60.39, 52.92, 13.87, 66.67, 60.65],
    "HuatuoGPT-o1-70B": [75.23, 86.80, 81.40, 76.09, 66.67, 72.82, 72.08, 68.51, 26.36, 74.13, 70.01],
    "m1-32B-1K": [67.34, 83.50, 77.60, 76.94, 66.67, 70.15, 73.70, 67.86, 25.53, 73.13, 68.24],
}


@dataclass
class Cell:
    acc: float  # percent
    low: float | None = None  # percent
    high: float | None = None
    n: int | None = None
    task: str | None = None


@dataclass
class TableRow:
    label: str
    model: str
    budget: object = None
    forcing: object = None
    cells: dict = field(default_factory=dict)  # column -> Cell
    avg: float | None = None
    reference: bool = False
    ran_budget: int | None = None  # the largest budget that really ran, where the context clamped requests

    @property
    def missing(self) -> list[str]:
        return [c for c in COLUMNS if c not in self.cells]


def setting_label(model: str, budget, forcing) -> str:
    name = display_name(model)
    parts = []
    if budget is not None:
        parts.append(f"budget={budget}")
    if forcing not in (None, 0) or (budget is not None and forcing is not None):
        parts.append(f"forcing={forcing}")
    return f"{name} ({', '.join(parts)})" if parts else name


def build_table(
    results: list[TaskResult],
    ci: str = "wilson",
    confidence: float = 0.95,
    iters: int = 10000,
    seed: int = 0,
) -> list[TableRow]:
    """Table 1 rows from task results: one per (model, budget, forcing) with any mapped benchmark."""
    rows: dict[tuple, TableRow] = {}
    for r in results:
        col = TASK_COLUMN.get(r.task)
        if col is None:
            continue
        key = r.setting
        row = rows.setdefault(key, TableRow(setting_label(*key), r.model, r.budget, r.forcing))
        if r.ran_budget is not None:  # label the row by what really ran where the context clamped it
            row.ran_budget = max(row.ran_budget or 0, r.ran_budget)
            row.label = setting_label(r.model, f"{r.budget} (ran <={row.ran_budget})", r.forcing)
        prev = row.cells.get(col)
        if prev is not None and COLUMN_TASKS[col].index(prev.task) <= COLUMN_TASKS[col].index(r.task):
            continue
        outcomes = list(r.items.values()) if r.items else None
        lo, hi = proportion_interval(r.acc, r.n, ci, outcomes, confidence, iters, seed)
        row.cells[col] = Cell(100 * r.acc, 100 * lo, 100 * hi, r.n, r.task)
    out = []
    for key in sorted(rows, key=lambda k: (k[0], sortable(k[1]), sortable(k[2]))):
        row = rows[key]
        vals = [row.cells[c].acc for c in COLUMNS if c in row.cells]
        row.avg = sum(vals) / len(vals) if vals else None
        out.append(row)
    return out


def reference_rows(names: list[str] | None = None) -> list[TableRow]:
    """The paper's published rows (all, or those whose name contains one of ``names``)."""
    out = []
    for name, values in PAPER_TABLE1.items():
        if names and not any(s.lower() in name.lower() for s in names):
            continue
        cells = {c: Cell(v) for c, v in zip(COLUMNS, values[:-1])}
        out.append(TableRow(f"paper: {name}", name, cells=cells, avg=values[-1], reference=True))
    return out


def _fmt(v, digits):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_cell(cell: Cell | None, digits: int = 2, intervals: bool = True) -> str:
    if cell is None:
        return "–"
    text = _fmt(cell.acc, digits)
    if intervals and cell.low is not None and cell.high is not None:
        text += f" [{_fmt(cell.low, digits)}, {_fmt(cell.high, digits)}]"
    return text


def to_markdown(rows: list[TableRow], digits: int = 2, intervals: bool = True, ci: str = "wilson") -> str:
    header = ["model"] + COLUMNS + [AVG]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: dict[tuple, list[str]] = {}
    for row in rows:
        cells = [format_cell(row.cells.get(c), digits, intervals) for c in COLUMNS]
        avg = _fmt(row.avg, digits) if row.avg is not None else "–"
        if row.missing and not row.reference:
            avg += "*" if row.avg is not None else ""
            notes.setdefault(tuple(row.missing), []).append(row.label)
        lines.append("| " + " | ".join([row.label] + cells + [avg]) + " |")
    out = "\n".join(lines) + "\n"
    measured = [r for r in rows if not r.reference]
    if intervals and measured:
        what = "Wilson score" if ci == "wilson" else "percentile bootstrap"
        out += f"\nAccuracy in %; brackets: 95% {what} interval. Avg.: plain mean of the benchmarks present.\n"
    if notes:
        out += "\n\\* Avg. over the benchmarks present only:\n"
        for missing, labels in notes.items():
            present = len(COLUMNS) - len(missing)
            out += f"- {present} of {len(COLUMNS)} (missing {', '.join(missing)}): {'; '.join(labels)}\n"
    return out


def to_csv(rows: list[TableRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["label", "model", "budget", "forcing", "source"]
    for c in COLUMNS:
        header += [c, f"{c}_low", f"{c}_high", f"{c}_n"]
    header += ["avg", "avg_n_benchmarks", "missing"]
    w.writerow(header)
    for row in rows:
        line = [
            row.label,
            row.model,
            "" if row.budget is None else row.budget,
            "" if row.forcing is None else row.forcing,
            "paper" if row.reference else "measured",
        ]
        for c in COLUMNS:
            cell = row.cells.get(c)
            if cell is None:
                line += ["", "", "", ""]
            else:
                line += [_r(cell.acc), _r(cell.low), _r(cell.high), "" if cell.n is None else cell.n]
        line += [_r(row.avg), len(COLUMNS) - len(row.missing), ";".join(row.missing)]
        w.writerow(line)
    return buf.getvalue()


def _r(v):
    return "" if v is None else f"{v:.4f}"


def paired_comparisons(results: list[TaskResult]) -> list[dict]:
    """McNemar's exact test between neighbouring budgets (same forcing) and neighbouring forcing
    rounds (same budget) of one model on one task, over the items both runs logged."""
    by_key: dict[tuple, list[TaskResult]] = {}
    for r in results:
        if r.items:
            by_key.setdefault((r.model, r.task), []).append(r)
    out = []
    for (model, task), rs in sorted(by_key.items()):
        for vary, fixed in (("budget", "forcing"), ("forcing", "budget")):
            groups: dict = {}
            for r in rs:
                if isinstance(getattr(r, vary), (int, float)):
                    groups.setdefault(getattr(r, fixed), []).append(r)
            for fixed_value, g in groups.items():
                g.sort(key=lambda r: getattr(r, vary))
                for a, b in zip(g, g[1:]):
                    m = mcnemar_exact(a.items, b.items)
                    out.append(
                        {
                            "model": model,
                            "task": task,
                            "vary": vary,
                            fixed: fixed_value,
                            "a": getattr(a, vary),
                            "b": getattr(b, vary),
                            "n": m.n,
                            "acc_a": m.acc_a,
                            "acc_b": m.acc_b,
                            "a_only": m.a_only,
                            "b_only": m.b_only,
                            "p_value": m.p_value,
                        }
                    )
    return out


def paired_markdown(pairs: list[dict]) -> str:
    if not pairs:
        return "No paired comparisons (needs runs with --log_samples at two or more budgets or forcing rounds).\n"
    lines = [
        "| model | task | compared | n | acc A | acc B | A only | B only | McNemar exact p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        fixed = "forcing" if p["vary"] == "budget" else "budget"
        what = f"{p['vary']} {p['a']} → {p['b']} ({fixed}={p.get(fixed)})"
        lines.append(
            f"| {display_name(p['model'])} | {p['task']} | {what} | {p['n']} | {100 * p['acc_a']:.2f} | "
            f"{100 * p['acc_b']:.2f} | {p['a_only']} | {p['b_only']} | {p['p_value']:.4g} |"
        )
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS", help="lm-eval output folders, results_*.json files or globs"
    )
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="write table1.md and table1.csv (and paired.md with --paired) here"
    )
    parser.add_argument(
        "--ci",
        choices=["wilson", "bootstrap"],
        default="wilson",
        help="95%% interval per cell: Wilson score (default) or percentile bootstrap",
    )
    parser.add_argument("--bootstrap_iters", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--no_intervals", action="store_true", help="accuracy only in the Markdown table")
    parser.add_argument(
        "--reference",
        nargs="?",
        const="",
        default=None,
        metavar="NAMES",
        help="append the paper's Table 1 rows (all, or those matching comma-separated NAMES)",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="McNemar's exact test between neighbouring budgets / forcing rounds (needs samples)",
    )


def run(args) -> int:
    if args.out:
        ensure_writable_dir(args.out, "--out")
    results = load_results(args.results)
    if not results:
        print(f"no lm-eval results found under: {' '.join(args.results)}", file=sys.stderr)
        return 1
    rows = build_table(results, ci=args.ci, iters=args.bootstrap_iters, seed=args.seed)
    unmapped = sorted({r.task for r in results if r.task not in TASK_COLUMN})
    if args.reference is not None:
        names = [s for s in args.reference.split(",") if s.strip()] or None
        rows += reference_rows(names)
    md = to_markdown(rows, args.digits, not args.no_intervals, args.ci)
    if unmapped:
        md += f"\nTasks without a Table 1 column (not shown): {', '.join(unmapped)}\n"
    text = md
    pairs_md = None
    if args.paired:
        pairs_md = paired_markdown(paired_comparisons(results))
        text += "\n## Paired comparisons (McNemar's exact test)\n\n" + pairs_md
    print(text, end="")
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "table1.md", md)
        atomic_write_text(out / "table1.csv", to_csv(rows))
        if pairs_md is not None:
            atomic_write_text(out / "paired.md", pairs_md)
        print(f"\nwrote {out / 'table1.md'} and {out / 'table1.csv'}", file=sys.stderr)
    return 0
