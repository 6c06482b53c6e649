"""`m1-harness explain` on fixed result folders with known trajectories (tests/fixtures/explain, written
by make_fixtures.py: real m1_budget traces on the scripted engine, one token per character)."""

import csv
import json
import shutil

import pytest
from repo_paths import FIXTURES
from scipy.stats import binomtest

from m1_harness import cli
from m1_harness.analysis import explain, outcomes, results
from m1_harness.analysis.stats import holm

RUNS = FIXTURES / "explain" / "runs"
A, B, BASE = "org/m1-a", "org/m1-b", "org/base (hf)"
AR, AW, HELP, HURT, UNST = "always right", "always wrong", "helped by thinking", "hurt by thinking", "unstable"
FIRST = [10, 40, 100, 200, 20, 70, 150, 30, 90, 5, 60, 120]  # first-round thinking tokens per medqa item

CLASSES = {
    (A, "medqa"): [AR, AW, HELP, HELP, HURT, HURT, HELP, UNST, UNST, UNST, UNST, HURT],
    (B, "medqa"): [AR, HELP, HELP, HURT, HURT, AW, UNST, UNST, AR, AW, HELP, AR],
    (BASE, "medqa"): [AR, AW] * 6,
    (A, "medbullets4"): [HELP] * 14 + [AR, HURT, AW, AW, HURT, HELP],
}
SETTLED = {
    (A, "medqa"): [16, None, 64, 128, None, None, None, None, 128, 128, None, None],
    (B, "medqa"): [16, 128, 64, None, None, None, 128, None, 16, None, 64, 16],
    (BASE, "medqa"): [None] * 12,
    (A, "medbullets4"): [64] * 10 + [128] * 4 + [16, None, None, None, None, None],
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    return explain.explain([RUNS], out), out


def find(rows, **kw):
    hits = [r for r in rows if all(r[k] == v for k, v in kw.items())]
    assert len(hits) == 1, (kw, hits)
    return hits[0]


def test_classes_and_settled_budgets(result):
    rows = result[0]["trajectories"]
    assert len(rows) == 12 * 3 + 20 + 4
    for (model, task), classes in CLASSES.items():
        mine = sorted((r for r in rows if (r["model"], r["task"]) == (model, task)), key=lambda r: r["doc_id"])
        assert [r["class"] for r in mine] == classes, (model, task)
        assert [r["settled_budget"] for r in mine] == SETTLED[model, task], (model, task)


def test_trajectory_rows_hold_every_setting(result):
    rows = result[0]["trajectories"]
    item3 = find(rows, model=A, task="medqa", doc_id=3)
    assert item3["item"] == "medqa-00003" and item3["gold"] == "D"
    assert [
        (s["setting"], s["thinking_tokens"], s["hit_budget"], s["letter"], s["method"], s["correct"])
        for s in item3["settings"]
    ] == [
        ("budget 16, forcing 0", 16, True, "A", "boxed", False),
        ("budget 16, forcing 1", 16, True, "A", "boxed", False),
        ("budget 64, forcing 0", 64, True, "A", "boxed", False),
        ("budget 64, forcing 1", 64, True, "A", "boxed", False),
        ("budget 128, forcing 0", 128, True, "D", "regex", True),
        ("budget 128, forcing 1", 128, True, "D", "regex", True),
    ]
    item0 = find(rows, model=A, task="medqa", doc_id=0)  # 10 tokens, then "\nWait" (5) and 30 more
    assert [(s["thinking_tokens"], s["hit_budget"]) for s in item0["settings"]] == [
        (10, False),
        (16, True),
        (10, False),
        (45, False),
        (10, False),
        (45, False),
    ]
    base = find(rows, model=BASE, task="medqa", doc_id=3)
    assert base["settings"] == [
        {
            "setting": "no budget",
            "budget": None,
            "forcing": None,
            "letter": "A",
            "method": "boxed",
            "correct": False,
            "thinking_tokens": None,
            "hit_budget": None,
        }
    ]
    with open(result[1] / "trajectories.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 60
    row = next(r for r in table if (r["model"], r["task"], r["doc_id"]) == (A, "medqa", "3"))
    assert (
        row["class"],
        row["settled_budget"],
        row["budget 128, forcing 0: letter"],
        row["budget 128, forcing 0: method"],
        row["budget 128, forcing 0: correct"],
        row["budget 128, forcing 0: thinking_tokens"],
        row["budget 16, forcing 0: cut"],
    ) == (HELP, "128", "D", "regex", "1", "128", "1")
    assert json.loads((result[1] / "trajectories.json").read_text()) == json.loads(json.dumps(rows))


def own_holm(ps):
    """Holm's step-down, written out: the i-th smallest p times (m - i), then running maxima, capped at 1."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [None] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - j) * ps[order[j]] for j in range(rank + 1)))
    return out


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_flips_counts_and_p_values(result):
    flips = result[0]["flips"]
    by_task = {t: [r for r in flips if r["task"] == t] for t in ("medqa", "medbullets4")}
    assert len(by_task["medqa"]) == 3 + 3 + 3 + 3 + 1 + 1 + 3  # A budget at f0, f1; A forcing; B; base-A; base-B; A-B
    assert len(by_task["medbullets4"]) == 9 and len(flips) == 26
    expected = {  # (task, model, from, to, at): stayed right, wrong->right, right->wrong, stayed wrong
        ("medbullets4", A, "budget 16", "budget 64", "forcing 0"): (3, 10, 0, 7),
        ("medbullets4", A, "budget 64", "budget 128", "forcing 0"): (12, 4, 1, 3),
        ("medbullets4", A, "budget 16", "budget 128", "forcing 0"): (2, 14, 1, 3),
        ("medbullets4", A, "forcing 0", "forcing 1", "budget 128"): (15, 1, 1, 3),
        ("medqa", A, "budget 16", "budget 64", "forcing 0"): (4, 3, 2, 3),
        ("medqa", A, "forcing 0", "forcing 1", "budget 64"): (6, 2, 1, 3),
        ("medqa", B, "budget 16", "budget 128", "forcing 0"): (4, 3, 2, 3),
        ("medqa", f"{BASE} vs {A}", BASE, A, "no budget vs budget 128, forcing 1"): (5, 2, 1, 4),
        ("medqa", f"{A} vs {B}", A, B, "budget 128, forcing 0"): (4, 3, 3, 2),
    }
    for (task, model, frm, to, at), counts in expected.items():
        r = find(flips, task=task, model=model, **{"from": frm, "to": to, "at": at})
        assert (r["stayed_right"], r["wrong_to_right"], r["right_to_wrong"], r["stayed_wrong"]) == counts
        assert r["n"] == sum(counts) == (20 if task == "medbullets4" else 12)
    for r in flips:  # McNemar's exact p is the two-sided binomial test on the discordant pairs
        d = r["wrong_to_right"] + r["right_to_wrong"]
        assert r["p"] == pytest.approx(binomtest(r["right_to_wrong"], d, 0.5).pvalue if d else 1.0, rel=1e-12)
    for rows in by_task.values():  # Holm over each task's comparisons
        assert [r["p_holm"] for r in rows] == pytest.approx(own_holm([r["p"] for r in rows]), rel=1e-12)
    strong = find(flips, task="medbullets4", model=A, **{"from": "budget 16", "to": "budget 128", "at": "forcing 0"})
    assert strong["p"] == pytest.approx(32 / 2**15) and strong["p_holm"] == pytest.approx(9 * 32 / 2**15)
    assert [r["neighbours"] for r in by_task["medbullets4"][:3]] == [True, True, False]


def test_lm_eval_multiple_choice_run(result):
    """lm-eval's own medqa_4options scores options by log-likelihood: the letter is the best option's."""
    rows = sorted((r for r in result[0]["trajectories"] if r["task"] == "medqa_4options"), key=lambda r: r["doc_id"])
    assert [(r["model"], r["gold"], r["class"]) for r in rows] == [
        (BASE, "B", AR),
        (BASE, "C", AW),
        (BASE, "C", AR),
        (BASE, "D", AR),
    ]
    assert [(s["letter"], s["method"], s["correct"]) for r in rows for s in r["settings"]] == [
        ("B", "loglikelihood", True),
        ("A", "loglikelihood", False),
        ("C", "loglikelihood", True),
        ("D", "loglikelihood", True),
    ]


def test_sentences(result):
    assert result[0]["sentences"] == [
        "medbullets4, org/m1-a, budget 16 -> 128 (forcing 0): 1 answer turned wrong, 14 turned right, of 20 (McNemar p = 0.00098, Holm 0.0088)",
        "medbullets4, org/m1-a, budget 16 -> 128 (forcing 1): 1 answer turned wrong, 14 turned right, of 20 (McNemar p = 0.00098, Holm 0.0088)",
        "medbullets4, org/m1-a, forcing 0 -> 1 (budget 128): 1 answer turned wrong, 1 turned right, of 20 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-a, budget 16 -> 128 (forcing 0): 1 answer turned wrong, 2 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-a, budget 16 -> 128 (forcing 1): 3 answers turned wrong, 4 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-a, forcing 0 -> 1 (budget 128): 2 answers turned wrong, 2 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-b, budget 16 -> 128 (forcing 0): 2 answers turned wrong, 3 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/base (hf) -> org/m1-a (no budget vs budget 128, forcing 1): 1 answer turned wrong, 2 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/base (hf) -> org/m1-b (no budget vs budget 128, forcing 0): 1 answer turned wrong, 2 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-a -> org/m1-b (budget 16, forcing 0): 2 answers turned wrong, 2 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-a -> org/m1-b (budget 64, forcing 0): 1 answer turned wrong, 1 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
        "medqa, org/m1-a -> org/m1-b (budget 128, forcing 0): 3 answers turned wrong, 3 turned right, of 12 (McNemar p = 1.00, Holm 1.00)",
    ]
    assert (result[1] / "summary.txt").read_text().splitlines() == result[0]["sentences"]


def test_cut_off_aware_accuracy_and_efficiency(result):
    rows = result[0]["settings"]
    r = find(rows, model=A, task="medqa", budget=16, forcing=0)
    right16 = {0, 4, 5, 8, 9, 11}  # column 1 of the fixture's outcomes
    cut = {i for i, n in enumerate(FIRST) if n > 16}
    tokens = sum(min(n, 16) for n in FIRST)
    assert (r["n"], r["right"], r["with_trace"], r["cut"]) == (12, 6, 12, len(cut)) == (12, 6, 12, 10)
    assert r["share_cut"] == pytest.approx(10 / 12)
    assert r["acc_cut"] == pytest.approx(len(right16 & cut) / len(cut)) == pytest.approx(0.4)
    assert r["acc_ended"] == 1.0  # items 0 and 9 ended on their own, both right
    assert r["mean_thinking_tokens"] == pytest.approx(tokens / 12) and tokens == 175
    assert r["thinking_tokens_per_right"] == pytest.approx(175 / 6)
    # budget 128, forcing 1: an item thinks FIRST + "\nWait" (5) + 30 tokens, so 100, 200, 150 and 120 are cut
    r = find(rows, model=A, task="medqa", budget=128, forcing=1)
    assert (r["cut"], r["acc_cut"], r["acc_ended"]) == (4, 0.75, 0.5)  # items 2, 3, 6 right, 11 wrong; 4 of 8
    base = find(rows, model=BASE, task="medqa")
    assert (base["n"], base["right"], base["with_trace"], base["share_cut"], base["mean_thinking_tokens"]) == (
        12,
        6,
        0,
        None,
        None,
    )
    with open(result[1] / "settings.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 6 + 3 + 1 + 6 + 1
    assert (
        next(t for t in table if t["model"] == A and t["task"] == "medqa" and t["setting"] == "budget 16, forcing 0")[
            "share_cut"
        ]
        == "0.8333"
    )


def test_figures(result):
    out = result[1]
    for name in ("efficiency.png", "flips_medqa.png", "flips_medbullets4.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = explain.figure_flips(result[0]["flips"], "medbullets4")
    ax = fig.axes[0]
    pairs = len(ax.get_yticklabels())
    assert pairs == 2 + 2 + 3  # budget 16 -> 64 -> 128 at forcing 0 and 1; forcing 0 -> 1 at three budgets
    first = [p.get_width() for p in ax.patches[0::pairs]]  # the first pair's bar in each of the 4 parts
    assert first == [3, 10, 0, 7]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "org/m1-a\nbudget 16 -> 64 (forcing 0)"
    fig = explain.figure_efficiency(result[0]["settings"])
    labels = sorted(t.get_text() for ax in fig.axes for t in ax.texts)
    # medbullets4: A f0, f1; medqa: A f0, f1, B; one "16" per panel, where every series starts at one point
    assert labels == sorted(["16"] * 2 + ["64", "128"] * (2 + 2))


def test_cli_json_and_files(tmp_path, capsys):
    assert cli.main(["explain", str(RUNS), "--out", str(tmp_path / "x"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 26
    assert {"task", "model", "from", "to", "n", "right_to_wrong", "wrong_to_right", "p", "p_holm"} <= set(printed[0])
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "efficiency.png",
        "flips.csv",
        "flips.json",
        "flips_medbullets4.png",
        "flips_medqa.png",
        "settings.csv",
        "summary.txt",
        "trajectories.csv",
        "trajectories.json",
        "viewer.html",
    ]
    assert cli.main(["explain", str(RUNS / "base-hf"), "--out", str(tmp_path / "y")]) == 0
    assert capsys.readouterr().out == "\n"  # one setting, one model: nothing to compare


def test_bad_inputs(tmp_path, capsys):
    assert cli.main(["explain", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"m1-harness explain: error: no such results path: {tmp_path / 'nope'} (give lm-eval output folders, "
        "results_*.json files or quoted globs)\n"
    )
    (tmp_path / "empty").mkdir()
    assert cli.main(["explain", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert (
        capsys.readouterr().err
        == f"m1-harness explain: error: no lm-eval results (results_*.json) with metric 'acc' under: {tmp_path / 'empty'}\n"
    )
    assert cli.main(["explain", str(RUNS / "base-hf"), "--metric", "exact_match", "--out", str(tmp_path / "o")]) == 2
    assert "with metric 'exact_match' under" in capsys.readouterr().err
    src = next((RUNS / "base-hf").rglob("results_*.json"))
    lone = tmp_path / "lone" / src.name
    lone.parent.mkdir()
    shutil.copy(src, lone)
    assert cli.main(["explain", str(tmp_path / "lone"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        f"m1-harness explain: error: {lone.resolve()}: no samples_medqa_*.jsonl beside it; rerun lm-eval "
        "with --log_samples (explain needs every item's answer)\n"
    )


def test_trace_records_in_m1_budget_default_folder(tmp_path):
    """A plain lm_eval run of m1_budget writes its records to <output_path>/m1_traces/."""
    src = RUNS / "m1-a" / "budget64_forcing1"
    shutil.copytree(src, tmp_path / "run", ignore=shutil.ignore_patterns("traces.jsonl"))
    (tmp_path / "run" / "m1_traces").mkdir()
    shutil.copy(src / "traces.jsonl", tmp_path / "run" / "m1_traces" / "traces_20261129T100000_1.jsonl")
    # a later run of another model at the same setting into the same folder: its texts differ, so it is not taken
    other = [
        json.loads(line) | {"text": "another model", "thinking_tokens": 1} for line in (src / "traces.jsonl").open()
    ]
    (tmp_path / "run" / "m1_traces" / "traces_20261129T110000_2.jsonl").write_text(
        "".join(json.dumps(o) + "\n" for o in other)
    )
    (r,) = [r for r in outcomes.load_runs([tmp_path / "run"]) if r.task == "medqa"]
    # item 10 thinks 60 tokens: "\nWait" and one more token do not fit in 64, so no forcing and no cut
    assert [r.outcomes[i].thinking_tokens for i in range(12)] == [45, 64, 64, 64, 55, 64, 64, 64, 64, 40, 60, 64]
    assert [r.outcomes[i].hit_budget for i in range(12)] == [False, True, True, True, False] + [True] * 4 + [
        False,
        False,
        True,
    ]


def test_trace_records_of_another_model_are_not_taken_even_with_the_same_text(tmp_path):
    """Records name their model: a newer run of another model into the same m1_traces/ folder, with the
    very same texts (two checkpoints can agree), is not taken for this one."""
    src = RUNS / "m1-a" / "budget64_forcing1"
    shutil.copytree(src, tmp_path / "run", ignore=shutil.ignore_patterns("traces.jsonl"))
    (tmp_path / "run" / "m1_traces").mkdir()
    (model,) = {r.model for r in results.load_results([src])}
    mine = [json.loads(line) | {"model": model} for line in (src / "traces.jsonl").open()]
    theirs = [o | {"model": "org/another-7B", "thinking_tokens": 1} for o in mine]
    for name, recs in (("traces_20261129T100000_1.jsonl", mine), ("traces_20261129T110000_2.jsonl", theirs)):
        (tmp_path / "run" / "m1_traces" / name).write_text("".join(json.dumps(o) + "\n" for o in recs))
    (r,) = [r for r in outcomes.load_runs([tmp_path / "run"]) if r.task == "medqa"]
    assert [r.outcomes[i].thinking_tokens for i in range(4)] == [45, 64, 64, 64]


def test_viewer_data_cannot_close_its_script():
    from m1_harness.analysis import viewer

    html = viewer.render({"items": {}, "rows": [{"text": "a </script><b>x\u2028y"}]})
    blob = html.split("const DATA = ", 1)[1].split(";\n", 1)[0]
    assert "</script>" not in blob and json.loads(blob) == {"items": {}, "rows": [{"text": "a </script><b>x\u2028y"}]}


def test_efficiency_labels_share_a_point():
    """A model that never thinks at forcing 0 puts every budget at one point: one label, not three on top."""
    rows = [
        {"model": "m", "task": "medqa", "forcing": 0, "budget": b, "acc": 0.15, "mean_thinking_tokens": 0.0}
        for b in (16, 32, 64)
    ]
    rows += [
        {"model": "m", "task": "medqa", "forcing": 2, "budget": b, "acc": a, "mean_thinking_tokens": t}
        for b, a, t in ((16, 0.35, 14.4), (32, 0.25, 27.95))
    ]
    fig = explain.figure_efficiency(rows)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["16", "16/32/64", "32"]
