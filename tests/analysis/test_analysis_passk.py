"""maj@k / pass@k / mean@k: the statistics against independent computations, per-sample scoring joined
with lm-eval's samples files, and `m1-harness sweep --samples` on fixture runs (tests/helpers/sampled_runs.py)."""

import csv
import json
import math
from fractions import Fraction
from itertools import combinations

import pytest
from sampled_runs import ANSWER_TOKENS, GOLD, TABLE, SampledEvaluate, thinking_tokens, trace_record

from m1_harness.analysis import results, sampled, stats, sweep

Z95 = 1.959963984540054


# -- statistics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_equals_brute_force_over_all_k_subsets(n):
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(range(n), k))
            exact = Fraction(sum(any(outcomes[i] for i in s) for s in subsets), len(subsets))
            assert stats.pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-15), (n, c, k)


def test_pass_at_k_bad_arguments():
    with pytest.raises(ValueError, match=r"pass@k needs 0 < k <= n and 0 <= c <= n, got n=3, c=1, k=4"):
        stats.pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match=r"got n=3, c=4, k=1"):
        stats.pass_at_k(3, 4, 1)


def test_majority_vote_ties_and_unextractable_answers():
    assert stats.majority_vote(["B", "A", "A", "B"]) == "B"  # 2-2: B occurs first
    assert stats.majority_vote(["A", "B", "B", "A"]) == "A"
    assert stats.majority_vote(["C", "B", "B", "C", "A"]) == "C"
    assert stats.majority_vote(["A", "B", "C"]) == "A"
    assert stats.majority_vote(["A", "B", "B"]) == "B"  # a strict majority wins whatever came first
    assert stats.majority_vote([None, None, "D"]) == "D"  # no answer does not vote
    assert stats.majority_vote([None, "C", "D", None]) == "C"
    assert stats.majority_vote([None, None]) is None
    assert stats.majority_vote([]) is None


def test_mean_interval_is_a_t_interval_and_falls_back_to_wilson():
    values = [1.0, 0.5, 0.25, 0.0, 0.75]
    m = 0.5
    s = math.sqrt(sum((v - m) ** 2 for v in values) / 4)
    t4 = 2.7764451051977987  # t(0.975, 4)
    assert stats.mean_interval(values) == pytest.approx(
        (m - t4 * s / math.sqrt(5), m + t4 * s / math.sqrt(5)), abs=1e-12
    )
    assert stats.mean_interval([1.0, 1.0, 1.0]) == stats.wilson_interval(3, 3)  # no spread: Wilson bounds it
    assert stats.mean_interval([0.0] * 4) == stats.wilson_interval(0, 4)
    assert stats.mean_interval([0.0, 1.0]) == (0.0, 1.0)  # clipped to [0, 1]
    assert all(math.isnan(v) for v in stats.mean_interval([]))


def fixture_items():
    return [[(a, a == GOLD[d]) for a in TABLE[d]] for d in range(4)]


# by hand from the table in sampled_runs.py (item-wise values, then averaged over the 4 items)
HAND = {
    1: dict(maj=[1, 0, 0, 0], mean=[1, 0, 0, 0], pass_=[Fraction(2, 4), Fraction(2, 4), Fraction(1, 4), 0]),
    2: dict(
        maj=[1, 0, 0, 0],
        mean=[Fraction(1, 2), Fraction(1, 2), 0, 0],
        pass_=[Fraction(5, 6), Fraction(5, 6), Fraction(1, 2), 0],
    ),
    3: dict(
        maj=[0, 0, 1, 0], mean=[Fraction(1, 3), Fraction(1, 3), Fraction(1, 3), 0], pass_=[1, 1, Fraction(3, 4), 0]
    ),
    4: dict(maj=[1, 1, 1, 0], mean=[Fraction(2, 4), Fraction(2, 4), Fraction(1, 4), 0], pass_=[1, 1, 1, 0]),
}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_sample_metrics_by_hand(k):
    got = stats.sample_metrics(fixture_items(), k)
    assert list(got) == list(stats.SAMPLE_METRICS)
    hand = HAND[k]
    assert got["maj_at_k"] == pytest.approx(float(sum(hand["maj"]) / 4), abs=1e-15)
    assert got["mean_at_k"] == pytest.approx(float(sum(hand["mean"]) / 4), abs=1e-15)
    assert got["pass_at_k"] == pytest.approx(float(sum(hand["pass_"]) / 4), abs=1e-15)
    assert (got["maj_ci_low"], got["maj_ci_high"]) == stats.wilson_interval(sum(hand["maj"]), 4)
    assert (got["mean_ci_low"], got["mean_ci_high"]) == stats.mean_interval([float(v) for v in hand["mean"]])
    assert (got["pass_ci_low"], got["pass_ci_high"]) == stats.mean_interval([float(v) for v in hand["pass_"]])


def test_sample_metrics_bad_k():
    with pytest.raises(ValueError, match=r"k=5 needs 1 <= k <= the samples of every item \(fewest: 4\)"):
        stats.sample_metrics(fixture_items(), 5)
    with pytest.raises(ValueError, match="at least one item"):
        stats.sample_metrics([], 1)


# -- per-sample scoring ----------------------------------------------------------------------------
def one_run(tmp_path, samples=4, budget=512):
    """A sampled sweep of one setting through the fixture evaluate; returns (folder, TaskResult)."""
    out = tmp_path / "sw"
    sweep.run_sweep(
        "pretrained=m",
        ["medqa"],
        [budget],
        [0],
        out,
        samples=list(range(1, samples + 1)),
        temperature=0.7,
        evaluate=SampledEvaluate(),
        echo=lambda *a: None,
    )
    (r,) = results.load_results([out])
    return out, r


def test_each_sample_is_scored_and_sample_0_agrees_with_lm_eval(tmp_path):
    _, r = one_run(tmp_path)
    got = sampled.sampled_outcomes(r)
    assert sorted(got) == [0, 1, 2, 3]
    for d, samples in got.items():
        assert [s.letter for s in samples] == TABLE[d]
        assert [s.correct for s in samples] == [a == GOLD[d] for a in TABLE[d]]
        assert [s.tokens for s in samples] == [thinking_tokens(512, d, j) + ANSWER_TOKENS for j in range(4)]


def test_k_rows_and_tokens(tmp_path):
    _, r = one_run(tmp_path, budget=1024)
    rows = sampled.k_rows(sampled.sampled_outcomes(r), [1, 2, 4])
    assert [list(row) for row in rows] == [sampled.K_FIELDS] * 3
    # sample j of item d decodes 2 * (10 (j+1) + d) + 5 tokens at budget 1024
    for row, k in zip(rows, [1, 2, 4]):
        per_item = [sum(2 * (10 * (j + 1) + d) + 5 for j in range(k)) for d in range(4)]
        assert row["mean_generated_tokens_per_item"] == sum(per_item) / 4
        assert row["samples"] == 4 and row["k"] == k
        assert row["maj_at_k"] == float(sum(HAND[k]["maj"]) / 4)
    with pytest.raises(sampled.SampledError, match="k=8 asked but the run drew 4 samples per item"):
        sampled.k_rows(sampled.sampled_outcomes(r), [1, 8])


def test_a_trace_file_of_another_run_is_refused(tmp_path):
    out, r = one_run(tmp_path)
    traces = out / "budget512_forcing0" / "traces.jsonl"
    recs = [json.loads(x) for x in traces.read_text().splitlines()]
    # sample 0 of item 3 answers A (right) in the traces, while lm-eval scored B (wrong)
    other = recs[:12] + [trace_record("medqa", 3, 0, 512, 0, 0, letter="A")] + recs[13:]
    traces.write_text("".join(json.dumps(x) + "\n" for x in other))
    with pytest.raises(sampled.SampledError) as err:
        sampled.sampled_outcomes(r)
    assert str(err.value) == (
        f"{r.source}: task medqa item 3: sample 0 of the trace records (right) is not the response lm-eval scored "
        "(wrong, another text); the trace file holds another run's records. Rerun the setting into a fresh folder"
    )
    # an item missing its last sample
    traces.write_text("".join(json.dumps(x) + "\n" for i, x in enumerate(recs) if i not in (12, 15)))
    with pytest.raises(sampled.SampledError, match=r"item 3 has trace records of samples \[1, 2\], not 0..1"):
        sampled.sampled_outcomes(r)
    traces.write_text("".join(json.dumps(x) + "\n" for i, x in enumerate(recs) if i != 15))
    with pytest.raises(sampled.SampledError, match=r"items have \[3, 4\] samples \(item 3: 3\); every item needs"):
        sampled.sampled_outcomes(r)
    traces.write_text("".join(json.dumps(x) + "\n" for x in recs if x["doc_id"] != 2))
    with pytest.raises(sampled.SampledError, match="no trace record for task medqa item 2 at budget 512, forcing 0"):
        sampled.sampled_outcomes(r)


def test_default_ks():
    assert sampled.default_ks(1) == [1]
    assert sampled.default_ks(8) == [1, 2, 4, 8]
    assert sampled.default_ks(6) == [1, 2, 4, 6]


# -- the sweep ---------------------------------------------------------------------------------------
def test_sampled_sweep_runs_the_largest_k_once_per_setting_and_tables_every_k(tmp_path):
    fake = SampledEvaluate()
    out = tmp_path / "sw"
    rows = sweep.run_sweep(
        "pretrained=m,engine=hf",
        ["medqa"],
        [512, 1024],
        [0],
        out,
        samples=[1, 2, 4],
        temperature=0.7,
        top_p=0.9,
        seed=5,
        evaluate=fake,
        echo=lambda *a: None,
    )
    assert [(c["budget"], c["samples"], c["seed"], c["gen_kwargs"]) for c in fake.calls] == [
        (1024, 4, 5, "do_sample=True,temperature=0.7,top_p=0.9"),
        (512, 4, 5, "do_sample=True,temperature=0.7,top_p=0.9"),
    ]
    assert [(r["budget"], r["k"]) for r in rows] == [(512, 1), (512, 2), (512, 4), (1024, 1), (1024, 2), (1024, 4)]
    for r in rows:
        k, scale = r["k"], r["budget"] // 512
        assert r["maj_at_k"] == float(sum(HAND[k]["maj"]) / 4)
        assert r["pass_at_k"] == pytest.approx(float(sum(HAND[k]["pass_"]) / 4), abs=1e-15)
        assert r["mean_at_k"] == pytest.approx(float(sum(HAND[k]["mean"]) / 4), abs=1e-15)
        assert (
            r["mean_generated_tokens_per_item"]
            == sum(scale * (10 * (j + 1) + d) + 5 for d in range(4) for j in range(k)) / 4
        )
        assert (r["acc"], r["n"], r["trace_records"]) == (0.25, 4, 16)  # lm-eval's acc: sample 0
    assert rows[0]["mean_at_k"] == rows[0]["acc"]
    table = list(csv.DictReader(open(out / "sweep.csv")))
    assert list(table[0]) == sweep.FIELDS + sampled.K_FIELDS
    assert json.loads((out / "sweep.json").read_text()) == rows
    manifest = json.loads((out / "budget512_forcing0" / sweep.MANIFEST).read_text())
    assert manifest["model_args"] == {
        "engine": "hf",
        "forcing": "0",
        "pretrained": "m",
        "samples": "4",
        "seed": "5",
        "thinking_budget": "512",
    }
    assert manifest["gen_kwargs"] == "do_sample=True,temperature=0.7,top_p=0.9"
    # other k of the same run: no new run, only the table
    again = SampledEvaluate()
    rows = sweep.run_sweep(
        "pretrained=m,engine=hf",
        ["medqa"],
        [512, 1024],
        [0],
        out,
        samples=[1, 2, 4],
        temperature=0.7,
        top_p=0.9,
        seed=5,
        evaluate=again,
        echo=lambda *a: None,
    )
    assert again.calls == []
    # another temperature is another run: refused with what differs
    with pytest.raises(
        sweep.SweepError,
        match="gen_kwargs: 'do_sample=True,temperature=0.7,top_p=0.9' there, 'do_sample=True,temperature=1.0,top_p=0.9' asked",
    ):
        sweep.run_sweep(
            "pretrained=m,engine=hf",
            ["medqa"],
            [512],
            [0],
            out,
            samples=[1, 2, 4],
            temperature=1.0,
            top_p=0.9,
            seed=5,
            evaluate=SampledEvaluate(),
            echo=lambda *a: None,
        )


def test_greedy_sweep_table_is_unchanged(tmp_path):
    out = tmp_path / "sw"
    rows = sweep.run_sweep("pretrained=m", ["medqa"], [512], [0], out, evaluate=SampledEvaluate(), echo=lambda *a: None)
    assert list(rows[0]) == sweep.FIELDS and len(rows) == 1
    assert list(csv.DictReader(open(out / "sweep.csv")))[0].keys() == set(sweep.FIELDS)


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["--samples", "1,2,4"],
            "--samples 1,2,4 needs --temperature above 0 (got None): greedy samples of one item are all the same",
        ),
        (["--samples", "1,4", "--temperature", "0"], "--samples 1,4 needs --temperature above 0 (got 0.0)"),
        (["--samples", "4,2", "--temperature", "0.7"], "--samples must increase (e.g. 1,2,4,8), got '4,2'"),
        (["--samples", "2,2", "--temperature", "0.7"], "--samples must increase (e.g. 1,2,4,8), got '2,2'"),
        (
            ["--samples", "0,2", "--temperature", "0.7"],
            "--samples needs positive integers (samples per item), got '0,2'",
        ),
        (["--samples", "a", "--temperature", "0.7"], "--samples takes comma-separated integers, got 'a'"),
        (["--temperature", "0.7"], "--temperature / --top_p sample several answers per item: give --samples too"),
        (["--samples", "1,2", "--temperature", "0.7", "--top_p", "1.5"], "--top_p must be in (0, 1], got 1.5"),
        (
            ["--samples", "1,2", "--temperature", "0.7", "--gen_kwargs", "temperature=0.5"],
            "--gen_kwargs sets temperature: give sampling as --temperature / --top_p",
        ),
        (
            ["--samples", "1,2", "--temperature", "0.7", "--model_args", "pretrained=m,seed=3"],
            "--model_args sets seed: a sampled sweep sets them from --samples and --seed",
        ),
    ],
)
def test_bad_sampling_arguments(tmp_path, capsys, argv, message):
    from m1_harness import cli

    base = [
        "sweep",
        "--model_args",
        "pretrained=m",
        "--tasks",
        "medqa",
        "--budgets",
        "64",
        "--output_path",
        str(tmp_path / "o"),
    ]
    if "--model_args" in argv:
        base = base[:1] + base[3:]
    assert cli.main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("m1-harness sweep: error: " + message)
    assert not (tmp_path / "o").exists()


# -- the compute-matched figure and table ----------------------------------------------------------------
def test_compute_matched_points_frontier_figure_and_table(tmp_path, capsys):
    from m1_harness import cli
    from m1_harness.analysis import compute_matched, plots

    out = tmp_path / "sw"
    sweep.run_sweep(
        "pretrained=m",
        ["medqa"],
        [512, 1024],
        [0, 1],
        out,
        samples=[1, 2, 4],
        temperature=0.7,
        evaluate=SampledEvaluate(),
        echo=lambda *a: None,
    )
    points = compute_matched.compute_points(results.load_results([out]))
    got = [
        (
            p["budget"],
            p["forcing"],
            p["k"],
            p["mean_generated_tokens_per_item"],
            p["accuracy"],
            p["series"],
            p["pareto"],
        )
        for p in points
    ]
    # tokens: sum over the first k samples of scale * (10 (j+1) + d) + 5, averaged over the 4 items
    assert got == [
        (512, 0, 1, 16.5, 0.25, "budget forcing@512 vote@512", True),
        (512, 0, 2, 43.0, 0.25, "vote@512", False),
        (512, 0, 4, 126.0, 0.75, "vote@512", True),
        (512, 1, 1, 16.5, 0.25, "forcing@512", True),  # ties (512, 0): neither dominates the other
        (1024, 0, 1, 28.0, 0.25, "budget forcing@1024 vote@1024", False),
        (1024, 0, 2, 76.0, 0.25, "vote@1024", False),
        (1024, 0, 4, 232.0, 0.75, "vote@1024", False),
        (1024, 1, 1, 28.0, 0.25, "forcing@1024", False),
    ]
    assert all((p["ci_low"], p["ci_high"]) == stats.wilson_interval(4 * p["accuracy"], 4) for p in points)
    fig = compute_matched.figure_compute_matched(points, plots.model_colours(["m"]))
    lines = {ln.get_gid(): ln.get_xydata().tolist() for ln in fig.axes[0].lines if ln.get_gid()}
    assert lines["budget:m"] == [[16.5, 25.0], [28.0, 25.0]]
    assert lines["vote@512:m"] == [[16.5, 25.0], [43.0, 25.0], [126.0, 75.0]]
    assert lines["forcing@1024:m"] == [[28.0, 25.0], [28.0, 25.0]]
    assert lines["pareto:m"] == [[16.5, 25.0], [16.5, 25.0], [126.0, 75.0]]
    # `m1-harness plot` writes the figure and its table
    assert cli.main(["plot", str(out), "--out", str(tmp_path / "fig"), "--format", "png"]) == 0
    assert {"compute_matched.png", "compute_matched.csv", "compute_matched.md"} <= {
        p.name for p in (tmp_path / "fig").iterdir()
    }
    table = list(csv.DictReader(open(tmp_path / "fig" / "compute_matched.csv")))
    assert list(table[0]) == compute_matched.POINT_FIELDS
    assert [(r["budget"], r["k"], r["pareto"]) for r in table][:3] == [
        ("512", "1", "True"),
        ("512", "2", "False"),
        ("512", "4", "True"),
    ]
    md = (tmp_path / "fig" / "compute_matched.md").read_text()
    assert "| 512 | 0 | 4 | 126.0 | **75.0** | [30.1, 95.4] | vote@512 | yes |" in md
    assert "| 1024 | 0 | 4 | 232.0 | 75.0 | [30.1, 95.4] | vote@1024 |  |" in md


def test_compute_matched_leaves_out_runs_without_traces(tmp_path, capsys):
    from m1_harness import cli

    out = tmp_path / "sw"
    sweep.run_sweep("pretrained=m", ["medqa"], [512], [0], out, evaluate=SampledEvaluate(), echo=lambda *a: None)
    (out / "budget512_forcing0" / "traces.jsonl").unlink()
    assert cli.main(["plot", str(out), "--out", str(tmp_path / "fig"), "--format", "png"]) == 0
    assert "compute-matched figure skipped: no m1_budget runs with trace records" in capsys.readouterr().err
    assert not (tmp_path / "fig" / "compute_matched.csv").exists()


# -- end to end on the tiny model ----------------------------------------------------------------------
@pytest.mark.slow
def test_sampled_sweep_end_to_end_tiny_model(tmp_path, tiny_model, eval_data_dir, monkeypatch, capfd):
    """m1_budget on the tiny Qwen2, medqa --limit 3, budgets 16 and 32, --samples 1,3 at temperature 0.8:
    one run per budget drawing 3 samples, every sample scored (sample 0 checked against lm-eval's own
    score), the budget-16 setting a pure replay of the cache, and the table equal to a recomputation
    from the trace records."""
    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    from m1_harness import cli
    from m1_harness.scoring import score

    out = tmp_path / "sw"
    argv = [
        "sweep",
        "--model_args",
        f"pretrained={tiny_model},engine=hf,answer_budget=8",
        "--tasks",
        "medqa",
        "--budgets",
        "16,32",
        "--output_path",
        str(out),
        "--limit",
        "3",
        "--batch_size",
        "3",
        "--samples",
        "1,3",
        "--temperature",
        "0.8",
        "--seed",
        "7",
    ]
    assert cli.main(argv) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [(r["budget"], r["k"], r["samples"], r["n"]) for r in rows] == [
        (16, 1, 3, 3),
        (16, 3, 3, 3),
        (32, 1, 3, 3),
        (32, 3, 3, 3),
    ]
    assert rows[0]["generated_tokens"] == 0 < rows[2]["generated_tokens"]  # budget 16: a pure replay
    docs = {
        json.loads(x)["doc_id"]: json.loads(x)
        for f in (out / "budget32_forcing0").rglob("samples_medqa_*.jsonl")
        for x in f.read_text().splitlines()
    }
    for r in rows:
        recs = [
            json.loads(x) for x in (out / f"budget{r['budget']}_forcing0" / "traces.jsonl").read_text().splitlines()
        ]
        assert sorted((x["doc_id"], x["sample"]) for x in recs) == [(d, j) for d in range(3) for j in range(3)]
        assert len({x["sample_seed"] for x in recs}) == 9  # every sample its own seed
        items = []
        for d in range(3):
            doc = docs[d]["doc"]
            options = dict(zip(doc["letters"], doc["choices"]))
            mine = sorted((x for x in recs if x["doc_id"] == d), key=lambda x: x["sample"])
            items.append([(s.letter, s.correct) for s in (score(x["text"], options, doc["answer_idx"]) for x in mine)])
        expect = stats.sample_metrics(items, r["k"])
        assert {m: r[m] for m in stats.SAMPLE_METRICS} == expect
        tokens = [
            sum(x["generated_tokens"] + x["answer_tokens"] for x in recs if x["doc_id"] == d and x["sample"] < r["k"])
            for d in range(3)
        ]
        assert r["mean_generated_tokens_per_item"] == sum(tokens) / 3
        if r["k"] == 1:
            assert r["mean_at_k"] == r["acc"]  # lm-eval scored sample 0
    assert "k=3" in capfd.readouterr().out
    assert cli.main(argv) == 0  # resumes: nothing to run
    assert len(list(out.rglob("results_*.json"))) == 2


def test_a_malformed_samples_line_is_skipped_with_a_warning_naming_the_file(tmp_path, caplog):
    """The samples reader named an undefined variable on a half-written line (NameError, not a warning)."""
    run = tmp_path / "model"  # not at tmp_path's top: other tests' trace files look one folder up for results
    run.mkdir()
    res = run / "results_2026-11-29T10-00-00.json"
    res.write_text("{}")
    path = run / "samples_medqa_2026-11-29T10-00-00.jsonl"
    path.write_text(json.dumps({"doc_id": 0, "filter": "none", "acc": 1.0}) + '\n{"doc_id": 1, "acc\n')
    with caplog.at_level("WARNING"):
        assert results.read_samples(res, "medqa", "acc,none") == {0: 1.0}
    assert f"skipping a malformed line in {path}" in caplog.text
