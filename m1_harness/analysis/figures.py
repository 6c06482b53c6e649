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
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from .report import COLUMNS, TASK_COLUMN  # noqa: E402

PANEL_W, PANEL_H = 4.0, 3.2  # inches per panel
DPI = 200  # a paper draft's resolution: a two-panel figure is 2400 x 840 pixels
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))
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
    fig, axes = plt.subplots(
        rows, cols, figsize=(width, PANEL_H * rows + 1.0), dpi=DPI, squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def shade(colour, i: int, n: int) -> tuple:
    """The i-th of n shades of a model's colour (0: the colour itself, then darker and lighter in turn),
    so a model's several series stay its colour and still tell apart."""
    if i == 0 or n <= 1:
        return to_rgb(colour)
    step = ((i + 1) // 2) / math.ceil((n - 1) / 2)
    rgb = np.array(to_rgb(colour))
    mixed = rgb * (1 - 0.5 * step) if i % 2 else rgb + (1 - rgb) * 0.4 * step
    return tuple(float(c) for c in mixed)


def finish(fig, axes, handles_from, title, ncol: int = 4, fontsize: float = 9):
    """The suptitle, one legend below the panels (each label once) and readable ticks on every axis."""
    handles, labels = [], []
    for ax in handles_from:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(title, fontsize=fontsize + 2)
    if handles:
        legend_below(fig, handles, labels, ncol, fontsize)
    for ax in axes:
        readable_ticks(ax)
    keep_texts_inside(fig)


def legend_below(fig, handles, labels, ncol: int = 4, fontsize: float = 9):
    """A legend under the panels in as many columns as fit the figure's width (a wider one is cut at
    both edges of the file)."""
    ncol = max(1, min(len(labels), ncol))
    while True:
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncol, frameon=False, fontsize=fontsize)
        fig.canvas.draw()
        box = legend.get_window_extent()
        if ncol == 1 or (box.x0 >= 0 and box.x1 <= fig.bbox.width):
            return legend
        legend.remove()
        ncol -= 1


def readable_ticks(ax) -> None:
    """At least two labelled ticks on a log axis whose data span less than one decade or octave (matplotlib
    labels only powers of the base there, so a narrow range gets none or one)."""
    for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log":
            continue
        lo, hi = sorted(lim)
        if sum(lo <= t <= hi for t in axis.get_majorticklocs()) >= 2:
            continue
        ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 5)[1:-1]})
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def keep_texts_inside(fig) -> None:
    """Point labels (annotations) near a panel's right or top edge go to the point's other side, so none
    runs into the frame."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        for text in ax.texts:
            if not hasattr(text, "xyann"):
                continue
            box = text.get_window_extent(renderer)
            dx, dy = text.xyann
            if box.x1 > frame.x1:
                text.set_horizontalalignment("right")
                dx = -abs(dx)
            if box.y1 > frame.y1:
                text.set_verticalalignment("top")
                dy = -abs(dy)
            text.xyann = (dx, dy)


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
