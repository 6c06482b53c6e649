"""Figures from fixed lm-eval result files: files, pixel sizes, and plotted values read back from the
figure objects compared with the table (tests/fixtures/analysis)."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from repo_paths import FIXTURES

from m1_harness import cli
from m1_harness.analysis import plots, report, results
from m1_harness.analysis.stats import ols_fit, wilson_interval

FIX = FIXTURES / "analysis"
RUNS = FIX / "runs"
TRACES = str(FIX / "traces" / "*.jsonl")
M1 = "UCSC-VLAA/m1-7B-1K"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture(scope="module")
def rs():
    return results.load_results([RUNS])


def _lines(ax, prefix):
    return {ln.get_gid().split(":", 1)[1]: ln for ln in ax.lines if (ln.get_gid() or "").startswith(prefix)}


def test_plot_command_writes_files_of_expected_size(tmp_path):
    rc = cli.main(["plot", str(RUNS), "--out", str(tmp_path), "--traces", TRACES])
    assert rc == 0
    for stem in ("figure1_budget", "figure3_forcing", "thinking_lengths"):
        assert (tmp_path / f"{stem}.pdf").stat().st_size > 1000
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    # 200 dpi; panels 4.0 x 3.2 in, at least 7 in wide, 1 in for titles and legend
    sizes = {
        stem: mpimg.imread(tmp_path / f"{stem}.png").shape[:2]
        for stem in ("figure1_budget", "figure3_forcing", "thinking_lengths")
    }
    assert sizes == {"figure1_budget": (840, 2400), "figure3_forcing": (840, 1400), "thinking_lengths": (840, 1600)}


def test_png_only_and_log2(tmp_path):
    assert cli.main(["plot", str(RUNS), "--out", str(tmp_path), "--format", "png", "--scale", "log2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure1_budget.png", "figure3_forcing.png"]


def test_figure1_values_match_table(rs):
    fig = plots.figure_budget(rs)
    table = {row.label: row for row in report.build_table(rs)}
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["MedMC (m1_medmcqa)", "MedQA", "PubMed (m1_pubmedqa)"]  # Table 1 column order
    col_of = {"MedMC (m1_medmcqa)": "MedMC", "MedQA": "MedQA", "PubMed (m1_pubmedqa)": "PubMed"}
    checked = 0
    for ax in fig.axes[:3]:
        col = col_of[ax.get_title()]
        for model, line in _lines(ax, "acc:").items():
            if "|forcing" in model:  # the forcing levels beside forcing 0 (test_figures_read.py)
                continue
            xy = line.get_xydata()
            assert list(xy[:, 0]) == [512, 1024, 2048, 4096]
            for (budget, acc), (lo, hi) in zip(xy, line.m1_interval):
                cell = table[report.setting_label(model, int(budget), 0)].cells[col]
                assert acc == pytest.approx(cell.acc)
                assert (lo, hi) == pytest.approx((cell.low, cell.high))
                # and independently: Wilson on k = acc * n of 20 items
                assert (lo, hi) == pytest.approx(tuple(100 * v for v in wilson_interval(round(acc / 5), 20)))
                checked += 1
            # dotted OLS line through these points, with its band
            ols = _lines(ax, "ols:")[model]
            assert ols.get_linestyle() == ":"
            fit = ols_fit(xy[:, 0], xy[:, 1])
            oxy = ols.get_xydata()
            assert oxy[0, 1] == pytest.approx(fit.predict(512))
            assert oxy[-1, 1] == pytest.approx(fit.predict(4096))
            assert any(c.get_gid() == f"band:{model}" for c in ax.collections)
    assert checked == 4 * (3 + 2)  # m1 on three benchmarks, Qwen on two


def test_figure1_log2_fits_log_budget(rs):
    fig = plots.figure_budget(rs, scale="log2")
    ax = fig.axes[1]
    assert ax.get_xscale() == "log"
    data = _lines(ax, "acc:")[M1].get_xydata()
    fit = ols_fit(np.log2(data[:, 0]), data[:, 1])
    oxy = _lines(ax, "ols:")[M1].get_xydata()
    assert oxy[:, 1] == pytest.approx(fit.predict(np.log2(oxy[:, 0])))


def test_figure3_forcing_values(rs):
    fig = plots.figure_forcing(rs)
    (ax,) = [a for a in fig.axes if a.get_visible() and a.get_title()]
    assert ax.get_title() == "MedQA" and ax.get_xlabel() == "budget-forcing rounds"
    line = _lines(ax, "acc:")[M1]
    by_f = {r.forcing: 100 * r.acc for r in rs if r.model == M1 and r.task == "medqa" and r.budget == 2048}
    assert [tuple(p) for p in line.get_xydata()] == sorted(by_f.items())
    assert "2K-token budget" in fig._suptitle.get_text()


def test_colours_consistent_across_figures(rs):
    colours = plots.model_colours([r.model for r in rs])
    f1 = plots.figure_budget(rs, colours=colours)
    f3 = plots.figure_forcing(rs, colours=colours)
    hist = plots.figure_thinking_lengths(results.load_traces([TRACES]), colours=colours)
    c1 = _lines(f1.axes[1], "acc:")[M1].get_color()
    c3 = _lines(f3.axes[0], "acc:")[M1].get_color()
    assert c1 == c3
    m1_ax = next(a for a in hist.axes if a.get_title().startswith(M1))
    assert tuple(m1_ax.patches[0].get_facecolor()[:3]) == pytest.approx(tuple(colours[M1][:3]))
    assert c1 != _lines(f1.axes[1], "acc:")[QWEN].get_color()


def test_histogram_counts_and_title():
    traces = results.load_traces([TRACES])
    assert sorted(traces) == [QWEN, M1]
    fig = plots.figure_thinking_lengths(traces)
    m1_ax = next(a for a in fig.axes if a.get_title().startswith(M1))
    assert sum(p.get_height() for p in m1_ax.patches) == len(traces[M1]) == 60
    mean = np.mean([r["thinking_tokens"] for r in traces[M1]])
    hit = 100 * np.mean([r["hit_budget"] for r in traces[M1]])
    assert f"mean {mean:.0f} tokens (n=60), {hit:.0f}% hit the budget" in m1_ax.get_title()


def test_hf_runs_without_budget_are_not_plotted(rs):
    fig = plots.figure_budget([r for r in rs if r.budget is None])
    assert fig is None


def test_traces_without_model_take_the_model_of_the_results_beside(tmp_path):
    """Records written before m1_budget put its model in them: a sweep's <setting>/traces.jsonl is named by the results
    in <setting>/<model>/; with several budgets the histogram shows the largest one."""
    import json
    import shutil

    for b in (512, 1024):
        setting = tmp_path / f"budget{b}_forcing0"
        shutil.copytree(RUNS / f"m1-7B-1K_b{b}_f0", setting)
        with open(setting / "traces.jsonl", "w") as fh:
            for i in range(8):
                t = min(b, 300 * (i + 1))
                fh.write(
                    json.dumps(
                        {
                            "task": "medqa",
                            "doc_id": i,
                            "requested_thinking_budget": b,
                            "thinking_tokens": t,
                            "hit_budget": t >= b,
                        }
                    )
                    + "\n"
                )
    traces = results.load_traces([str(tmp_path / "*" / "traces.jsonl")])
    assert list(traces) == [M1] and len(traces[M1]) == 16
    fig = plots.figure_thinking_lengths(traces)
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches) == 8
    assert ax.get_title().startswith(f"{M1} at budget 1024\n")
    assert "(n=8), 62% hit the budget" in ax.get_title()  # 300, 600, 900, then 5 of 8 cut at 1024


def test_traces_named_by_their_own_model_not_by_the_results_beside(tmp_path):
    """Two models' runs in one m1_traces/ folder beside one model's results: each record's own model
    (m1_budget writes it) decides, not the results beside the folder."""
    import json
    import shutil

    shutil.copytree(RUNS / "m1-7B-1K_b512_f0", tmp_path / "run")
    traces = tmp_path / "run" / "m1_traces"
    traces.mkdir()
    for name, model in (("a.jsonl", "org/other-7B"), ("b.jsonl", M1)):
        (traces / name).write_text(
            json.dumps({"model": model, "task": "medqa", "doc_id": 0, "thinking_tokens": 5, "hit_budget": False}) + "\n"
        )
    assert {m: len(r) for m, r in results.load_traces([str(traces / "*.jsonl")]).items()} == {"org/other-7B": 1, M1: 1}


def test_trace_file_stem_when_nothing_beside(tmp_path):
    (tmp_path / "run7.jsonl").write_text('{"thinking_tokens": 5, "hit_budget": false}\nnot json\n{"x": 1}\n')
    groups = results.load_traces([str(tmp_path / "*.jsonl")])
    assert list(groups) == ["run7"] and len(groups["run7"]) == 1
    (rec,) = groups["run7"]  # read in the current shape (records.read_records upgrades version 1)
    assert (rec["thinking_tokens"], rec["hit_budget"], rec["version"], rec["model"]) == (5, False, 1, None)


def test_figure1_draws_a_forcing_only_sweep_at_its_forcing():
    """A model swept only with forcing (no forcing-0 runs) is drawn at its fewest rounds, labelled so;
    its other forcing level is a line of its own, never mixed in."""
    rows = [
        results.TaskResult(
            model="m/forced",
            task="medqa",
            budget=b,
            forcing=4,
            acc=acc,
            n=30,
            metric_key="acc,none",
            source="x",
            date="",
        )
        for b, acc in ((16, 0.3), (32, 0.2), (64, 0.1))
    ] + [
        results.TaskResult(
            model="m/forced",
            task="medqa",
            budget=64,
            forcing=5,
            acc=0.9,
            n=30,
            metric_key="acc,none",
            source="x",
            date="",
        )
    ]
    fig = plots.figure_budget(rows)
    assert fig is not None
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "acc:m/forced"]
    assert line.get_xydata().tolist() == [[16.0, 30.0], [32.0, 20.0], [64.0, 10.0]]  # forcing 5 is not mixed in
    assert [c.get_label() for c in fig.axes[0].containers] == ["m/forced (forcing 4)", "m/forced (forcing 5)"]
    (other,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "acc:m/forced|forcing 5"]
    assert other.get_xydata().tolist() == [[64.0, 90.0]]
