"""Every figure `plot` and `explain` write reads without its caption: rendered at a paper draft's
resolution, its legend inside the canvas, at least two tick labels on each axis, no point label over
the frame, and every series told apart by colour, marker or line style (issue 25, item 5)."""

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest
from repo_paths import FIXTURES

from m1_harness import cli
from m1_harness.analysis import compute_matched, explain, figures, plots, results

RUNS = FIXTURES / "explain" / "runs"

TRACES = str(RUNS / "**" / "traces.jsonl")


def style(handle):
    """What tells a legend entry apart: colour, marker and line style (bars: their colour)."""
    if hasattr(handle, "patches"):  # a bar container
        return tuple(round(c, 3) for c in handle.patches[0].get_facecolor())
    line = handle.lines[0] if hasattr(handle, "lines") else handle  # an errorbar container: its data line
    return (tuple(round(c, 3) for c in figures.to_rgb(line.get_color())), line.get_marker(), str(line.get_linestyle()))


def assert_reads(fig, png=None):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert box.x0 >= -1 and box.x1 <= canvas.x1 + 1 and box.y0 >= -1 and box.y1 <= canvas.y1 + 1, (box, canvas)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        frame = ax.get_window_extent(renderer)
        for name, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            shown = [
                t
                for t in labels
                if t.get_text()
                and t.get_visible()
                and (
                    frame.x0 - 1 <= t.get_window_extent(renderer).x0 <= frame.x1 + 1
                    if name == "x"
                    else frame.y0 - 1
                    <= (t.get_window_extent(renderer).y0 + t.get_window_extent(renderer).y1) / 2
                    <= frame.y1 + 1
                )
            ]
            assert len(shown) >= 2, (ax.get_title(), name, [t.get_text() for t in labels])
        for text in ax.texts:
            if hasattr(text, "xyann"):
                box = text.get_window_extent(renderer)
                assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and box.y1 <= frame.y1 + 1, (
                    text.get_text(),
                    box,
                    frame,
                )
    entries = {}  # legend label -> style, over all panels: one label is one series
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, style(handle))
    assert len(set(entries.values())) == len(entries), entries
    if png is not None:
        height, width = mpimg.imread(png).shape[:2]
        w_in, h_in = fig.get_size_inches()
        assert width / w_in >= 200 and height / h_in >= 200, (width, height, w_in, h_in)
    plt.close(fig)


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    out = tmp_path_factory.mktemp("plot")
    assert cli.main(["plot", str(RUNS), "--out", str(out), "--format", "png", "--traces", TRACES]) == 0
    return out


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    return explain.explain([RUNS], out), out


@pytest.fixture(scope="module")
def loaded():
    return results.load_results([RUNS])


def test_figure1_reads_and_draws_every_forcing_level(plotted, loaded):
    fig = plots.figure_budget(loaded)
    gids = {ln.get_gid() for ax in fig.axes for ln in ax.lines if (ln.get_gid() or "").startswith("acc:")}
    assert gids == {"acc:org/m1-a", "acc:org/m1-a|forcing 1", "acc:org/m1-b"}
    forced = next(ln for ln in fig.axes[0].lines if ln.get_gid() == "acc:org/m1-a|forcing 1")
    assert forced.get_xydata()[:, 0].tolist() == [16.0, 64.0, 128.0]
    assert sorted(c.get_label() for c in fig.axes[0].containers) == [
        "org/m1-a (forcing 0)",
        "org/m1-a (forcing 1)",
        "org/m1-b",
    ]
    assert_reads(fig, plotted / "figure1_budget.png")


def test_figure3_reads(plotted, loaded):
    assert_reads(plots.figure_forcing(loaded), plotted / "figure3_forcing.png")


def test_figure3_legend_of_many_long_names_stays_inside():
    rs = [
        results.TaskResult(
            model=f"organisation/a-rather-long-model-name-{m}",
            task="medqa",
            budget=b,
            forcing=f,
            acc=0.1 * (m + f) + b / 10000,
            n=50,
            metric_key="acc,none",
            source="",
            date="",
        )
        for m in range(4)
        for b in (256, 1024, 4096)
        for f in (0, 1, 2)
    ]
    assert_reads(plots.figure_forcing(rs))


def test_compute_matched_reads(plotted, loaded):
    points = compute_matched.compute_points(loaded)
    assert_reads(
        compute_matched.figure_compute_matched(points, plots.model_colours(r.model for r in loaded)),
        plotted / "compute_matched.png",
    )


def test_compute_matched_narrow_token_range_has_tick_labels():
    """Within one octave the log axis has no power of two to label: it gets its own ticks."""
    points = [
        {
            "model": "m",
            "task": "medqa",
            "budget": b,
            "forcing": 0,
            "k": 1,
            "samples": 1,
            "n": 10,
            "mean_generated_tokens_per_item": t,
            "accuracy": a,
            "ci_low": a - 0.1,
            "ci_high": a + 0.1,
            "series": "budget",
            "pareto": True,
        }
        for b, t, a in ((16, 40.0, 0.3), (32, 48.0, 0.4), (64, 55.0, 0.5))
    ]
    fig = compute_matched.figure_compute_matched(points, plots.model_colours(["m"]))
    assert_reads(fig)
    fig.canvas.draw()
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert shown == ["43", "47", "51"]


def test_thinking_lengths_reads(plotted):
    traces = results.load_traces([TRACES])
    assert_reads(plots.figure_thinking_lengths(traces), plotted / "thinking_lengths.png")


def test_efficiency_reads(explained):
    assert_reads(explain.figure_efficiency(explained[0]["settings"]), explained[1] / "efficiency.png")


@pytest.mark.parametrize("task", ["medqa", "medbullets4"])
def test_flips_reads(explained, task):
    assert_reads(explain.figure_flips(explained[0]["flips"], task), explained[1] / f"flips_{task}.png")
