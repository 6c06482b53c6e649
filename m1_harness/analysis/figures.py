"""The figure kit every analysis figure is drawn with: one panel grid, one legend and title layout,
one colour per model, the 0-100% axis and atomic saving, so the figures of ``plot`` and ``explain``
look alike and a fix to the layout reaches all of them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (files only, never a window)
import matplotlib.pyplot as plt  # noqa: E402

from .report import COLUMNS, TASK_COLUMN  # noqa: E402

PANEL_W, PANEL_H = 4.0, 3.2  # inches per panel
DPI = 100
MAX_COLS = 5
MIN_W = 7.0  # inches, so titles and legends fit above a single panel


def model_colours(models) -> dict[str, tuple]:
    """A fixed colour per model (sorted names -> tab10, then tab20), the same in every figure."""
    names = sorted(set(models))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(names)}


def panel_title(task: str) -> str:
    col = TASK_COLUMN.get(task)
    return f"{col} ({task})" if col and col.lower() != task.lower() else (col or task)


def task_order(tasks) -> list[str]:
    order = {c: i for i, c in enumerate(COLUMNS)}
    return sorted(set(tasks), key=lambda t: (order.get(TASK_COLUMN.get(t), len(COLUMNS)), t))


def grid(n_panels: int):
    cols = min(MAX_COLS, max(1, n_panels))
    rows = max(1, math.ceil(n_panels / cols))
    width = max(PANEL_W * cols, MIN_W)
    fig, axes = plt.subplots(rows, cols, figsize=(width, PANEL_H * rows + 1.0), dpi=DPI, squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def finish(fig, axes, handles_from, title, ncol: int = 4):
    handles, labels = [], []
    for ax in handles_from:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), ncol), frameon=False,
                   fontsize=9)
    fig.suptitle(title, fontsize=11)


def clip_percent(ax) -> None:
    """Keep the y axis within 0-100% (bands can pass it), with a margin so points at 0 or 100 show."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, -3.0), min(hi, 103.0))


def save(fig, out: Path, stem: str, formats) -> list[Path]:
    """Each figure file whole or not at all (drawn to a temporary name, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out / f"{stem}.{fmt}"
        tmp = out / f".{stem}.tmp.{fmt}"
        fig.savefig(tmp, dpi=DPI, format=fmt)
        os.replace(tmp, p)
        paths.append(p)
    plt.close(fig)
    return paths
