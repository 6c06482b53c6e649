"""The sweep loop: order (largest first), lm-eval's own output layout through its EvaluationTracker,
the tidy table with trace statistics, and resuming. The evaluate function is injected for speed; one
test runs lm-eval for real with its `dummy` model and one (slow) with m1_budget on the tiny model."""

import csv
import hashlib
import json
from pathlib import Path

import pytest

from m1_harness.analysis import results, sweep


def test_settings_order_largest_first():
    assert sweep.settings_order([512, 2048, 1024], [0, 2]) == [
        (2048, 2),
        (2048, 0),
        (1024, 2),
        (1024, 0),
        (512, 2),
        (512, 0),
    ]


def test_model_args_per_setting(caplog):
    base = sweep.base_model_args("pretrained=m,thinking_budget=99,engine=hf,trace_path=/x,forcing=3")
    assert base == "pretrained=m,engine=hf"
    assert "thinking_budget=99" in caplog.text
    assert sweep.setting_model_args(base, 512, 1, Path("/o/t.jsonl")) == (
        "pretrained=m,engine=hf,thinking_budget=512,forcing=1,trace_path=/o/t.jsonl"
    )
    assert sweep.setting_model_args("", 8, 0, None) == "thinking_budget=8,forcing=0"


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,b", "--budgets takes comma-separated integers, got 'a,b'"),
        ("-1", "--budgets needs at least one non-negative integer, got '-1'"),
        ("", "--budgets needs at least one non-negative integer, got ''"),
    ],
)
def test_bad_lists(text, message):
    with pytest.raises(sweep.SweepError) as err:
        sweep.parse_int_list(text, "budgets")
    assert str(err.value) == message


class FakeEvaluate:
    """Stands in for lm_eval.simple_evaluate: returns what it would (results, configs, n-samples,
    config, samples), writes m1_budget-style trace records at trace_path, and logs its calls."""

    def __init__(self, n=10, context=None):
        self.calls = []
        self.n = n
        self.context = context  # budgets above it are clamped to it, as m1_budget records them

    def __call__(self, *, model, model_args, tasks, limit, log_samples, evaluation_tracker, **kw):
        args = dict(p.split("=", 1) for p in model_args.split(","))
        budget, forcing = int(args["thinking_budget"]), int(args["forcing"])
        self.calls.append((budget, forcing, kw.get("task_manager")))
        evaluation_tracker.general_config_tracker.log_experiment_args(
            model_source=model,
            model_args=model_args,
            system_instruction=None,
            chat_template=None,
            fewshot_as_multiturn=False,
        )
        res, nsamples, samples = {}, {}, {}
        for task in tasks:
            # accuracy grows with the budget: k = budget / 256 correct of n (capped)
            k = min(self.n, budget // 256)
            res[task] = {"alias": task, "acc,none": k / self.n, "acc_stderr,none": 0.1}
            nsamples[task] = {"original": 100, "effective": self.n}
            samples[task] = [
                {
                    "doc_id": i,
                    "doc": {"q": i},
                    "target": "A",
                    "arguments": [("prompt", {"until": []})],
                    "resps": [["x"]],
                    "filtered_resps": ["x"],
                    "filter": "none",
                    "metrics": ["acc"],
                    "doc_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                    "prompt_hash": "p",
                    "target_hash": "t",
                    "acc": float(i < k),
                }
                for i in range(self.n)
            ]
            with open(args["trace_path"], "a") as fh:
                ran = min(budget, self.context or budget)
                for i in range(self.n):
                    tokens = min(ran, 100 * (i + 1))
                    fh.write(
                        json.dumps(
                            {
                                "task": task,
                                "doc_id": i,
                                "thinking_tokens": tokens,
                                "hit_budget": tokens >= ran,
                                "requested_thinking_budget": budget,
                                "thinking_budget": ran,
                                "forcing": forcing,
                                "budget_clamped": ran < budget,
                            }
                        )
                        + "\n"
                    )
        return {
            "results": res,
            "group_subtasks": {},
            "configs": {t: {"task": t} for t in tasks},
            "versions": {t: 1.0 for t in tasks},
            "n-shot": {t: 0 for t in tasks},
            "higher_is_better": {t: {"acc": True} for t in tasks},
            "n-samples": nsamples,
            "config": {"model": model, "model_args": model_args, "limit": limit, "gen_kwargs": {}},
            "samples": samples if log_samples else None,
        }


def test_sweep_writes_lm_eval_folders_and_tidy_table(tmp_path):
    fake = FakeEvaluate()
    out = tmp_path / "sweep"
    rows = sweep.run_sweep(
        "pretrained=org/m1-tiny", ["medqa", "nejm"], [512, 1024], [0, 1], out, evaluate=fake, echo=lambda *a: None
    )
    assert [c[:2] for c in fake.calls] == [(1024, 1), (1024, 0), (512, 1), (512, 0)]
    # each setting is a normal lm-eval output folder
    for b, f in [(512, 0), (512, 1), (1024, 0), (1024, 1)]:
        model_dir = out / f"budget{b}_forcing{f}" / "org__m1-tiny"
        (res_file,) = model_dir.glob("results_*.json")
        date = res_file.stem[len("results_") :]
        assert (model_dir / f"samples_medqa_{date}.jsonl").is_file()
        assert (out / f"budget{b}_forcing{f}" / "traces.jsonl").is_file()
        data = json.loads(res_file.read_text())
        assert data["model_name"] == "org/m1-tiny" and "task_hashes" in data
    # the tidy table
    assert len(rows) == 8
    table = list(csv.DictReader(open(out / "sweep.csv")))
    assert json.loads((out / "sweep.json").read_text()) == rows
    assert list(table[0]) == sweep.FIELDS
    row = next(r for r in rows if r["task"] == "nejm" and r["budget"] == 512 and r["forcing"] == 1)
    assert (row["model"], row["n"], row["acc"]) == ("org/m1-tiny", 10, 0.2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(results_wilson(2, 10))
    # traces: tokens min(512, 100*(i+1)) for i < 10 -> 100..500 then 512 x5; 5 of 10 hit the budget
    assert row["mean_thinking_tokens"] == pytest.approx((100 + 200 + 300 + 400 + 500 + 5 * 512) / 10)
    assert row["hit_budget_share"] == 0.5 and row["trace_records"] == 10
    # and the whole sweep folder is readable by report/plot
    loaded = results.load_results([out])
    assert {(r.budget, r.forcing) for r in loaded} == {(512, 0), (512, 1), (1024, 0), (1024, 1)}
    assert all(len(r.items) == 10 for r in loaded)


def results_wilson(k, n):
    from m1_harness.analysis.stats import wilson_interval

    return wilson_interval(k, n)


def test_sweep_resumes(tmp_path):
    out = tmp_path / "sweep"
    sweep.run_sweep("pretrained=m", ["medqa"], [256, 512], [0], out, evaluate=FakeEvaluate(), echo=lambda *a: None)
    again = FakeEvaluate()
    lines = []
    rows = sweep.run_sweep("pretrained=m", ["medqa"], [256, 512], [0], out, evaluate=again, echo=lines.append)
    assert again.calls == [] and len(rows) == 2
    assert all("skipped" in line for line in lines)
    # a setting without results (killed run) is run again, its stale trace records replaced
    import shutil

    shutil.rmtree(out / "budget256_forcing0" / "m")
    (out / "budget256_forcing0" / "traces.jsonl").write_text('{"task": "medqa", "thinking_tokens": 1}\n')
    third = FakeEvaluate()
    rows = sweep.run_sweep(
        "pretrained=m", ["medqa", "nejm"][:1], [256, 512], [0], out, evaluate=third, echo=lambda *a: None
    )
    assert [c[:2] for c in third.calls] == [(256, 0)]
    row = next(r for r in rows if r["budget"] == 256)
    assert row["trace_records"] == 10
    # a new task makes every setting run again
    fourth = FakeEvaluate()
    sweep.run_sweep("pretrained=m", ["medqa", "nejm"], [256, 512], [0], out, evaluate=fourth, echo=lambda *a: None)
    assert len(fourth.calls) == 2


def test_sweep_cli_with_lm_eval_dummy_model(tmp_path, eval_data_dir, capsys, lm_eval_task_index):
    """A real lm-eval run (its `dummy` model, the project's medqa task), one setting."""
    from m1_harness import cli

    out = tmp_path / "sw"
    rc = cli.main(
        [
            "sweep",
            "--model",
            "dummy",
            "--model_args",
            "pretrained=org/dummy",
            "--tasks",
            "medqa",
            "--budgets",
            "64",
            "--output_path",
            str(out),
            "--limit",
            "2",
            "--no_traces",
        ]
    )
    assert rc == 0
    (res_file,) = (out / "budget64_forcing0" / "org__dummy").glob("results_*.json")
    (r,) = results.load_results([out])
    assert (r.model, r.task, r.budget, r.forcing, r.n, r.model_type) == ("org/dummy", "medqa", 64, 0, 2, "dummy")
    assert len(r.items) == 2
    rows = json.loads((out / "sweep.json").read_text())
    assert [(x["task"], x["budget"], x["n"]) for x in rows] == [("medqa", 64, 2)]
    assert rows[0]["mean_thinking_tokens"] is None
    assert "budget=64" in capsys.readouterr().out


def test_a_folder_of_another_run_is_refused_with_what_differs(tmp_path, monkeypatch):
    """A sweep once skipped settings whose folder held another model's or another --limit's results
    (it compared task names only), and its table then mixed two runs."""
    out = tmp_path / "sweep"
    quiet = dict(evaluate=FakeEvaluate(), echo=lambda *a: None)
    sweep.run_sweep("pretrained=m,engine=hf", ["medqa"], [256, 512], [0], out, limit=10, **quiet)
    for change, differs in [
        (
            dict(model_args="pretrained=other,engine=hf"),
            "model_args: {'engine': 'hf', 'forcing': '0', 'pretrained': 'm', "
            "'thinking_budget': '256'} there, {'engine': 'hf', 'forcing': '0', 'pretrained': 'other', 'thinking_budget': '256'} asked",
        ),
        (dict(limit=20), "limit: 10 there, 20 asked"),
    ]:
        kw = dict(model_args="pretrained=m,engine=hf", limit=10) | change
        fake = FakeEvaluate()
        with pytest.raises(sweep.SweepError) as err:
            sweep.run_sweep(kw.pop("model_args"), ["medqa"], [256, 512], [0], out, evaluate=fake, echo=print, **kw)
        assert fake.calls == []
        msg = str(err.value)
        assert msg.startswith(f"{out} holds results of another run for 2 setting(s):\n  {out / 'budget512_forcing0'}: ")
        assert f"  {out / 'budget256_forcing0'}: {differs}" in msg
        assert msg.endswith("Use another --output_path, or --force to move those folders aside and redo them.")
    monkeypatch.setenv("M1_HARNESS_DATA", str(tmp_path))
    with pytest.raises(sweep.SweepError, match="data: .* there, .*" + str(tmp_path.name) + "' asked"):
        sweep.run_sweep("pretrained=m,engine=hf", ["medqa"], [256], [0], out, limit=10, **quiet)
    monkeypatch.undo()
    # --force moves the other run aside (nothing deleted) and redoes it; the table holds one run only
    fake, lines = FakeEvaluate(), []
    rows = sweep.run_sweep(
        "pretrained=other", ["medqa"], [256, 512], [0], out, limit=10, force=True, evaluate=fake, echo=lines.append
    )
    assert [c[:2] for c in fake.calls] == [(512, 0), (256, 0)]
    assert len(list(out.glob("budget256_forcing0.replaced-*"))) == 1
    assert {r["model"] for r in rows} == {"other"}
    assert sum("--force: moved" in line for line in lines) == 2


def test_results_without_a_record_of_their_run_are_refused(tmp_path):
    out = tmp_path / "sweep"
    sweep.run_sweep("pretrained=m", ["medqa"], [256], [0], out, evaluate=FakeEvaluate(), echo=lambda *a: None)
    (out / "budget256_forcing0" / sweep.MANIFEST).unlink()  # e.g. a folder written by an older m1-harness
    with pytest.raises(
        sweep.SweepError,
        match="it has no sweep_setting.json .written when a setting starts., so what made these results is unknown",
    ):
        sweep.run_sweep("pretrained=m", ["medqa"], [256], [0], out, evaluate=FakeEvaluate(), echo=lambda *a: None)


def test_a_half_written_results_file_is_named_and_skipped(tmp_path, caplog, capsys):
    from m1_harness import cli

    out = tmp_path / "sweep"
    sweep.run_sweep("pretrained=m", ["medqa"], [256, 512], [0], out, evaluate=FakeEvaluate(), echo=lambda *a: None)
    (bad,) = (out / "budget512_forcing0" / "m").glob("results_*.json")
    bad.write_text(bad.read_text()[:200])  # Ctrl-C or a full disk while lm-eval wrote it
    (out / "sweep.csv").unlink()
    rows = sweep.sweep_table(out, [out / "budget256_forcing0", out / "budget512_forcing0"])
    assert [r["budget"] for r in rows] == [256]
    assert f"skipping {bad}: not a complete lm-eval results file (invalid JSON at line" in caplog.text
    assert cli.main(["report", str(out)]) == 0
    assert f"skipping {bad}: not a complete lm-eval results file" in caplog.text
    assert "budget=256" in capsys.readouterr().out


def test_tables_and_figures_say_what_budget_really_ran(tmp_path, capsys):
    """Asked 4096 with room for 300: the table, the report and Figure 1 say 'ran <=300', not only 4096."""
    from m1_harness import cli
    from m1_harness.analysis import plots, report

    out = tmp_path / "sweep"
    rows = sweep.run_sweep(
        "pretrained=m", ["medqa"], [256, 4096], [0], out, evaluate=FakeEvaluate(context=300), echo=lambda *a: None
    )
    assert [(r["budget"], r["ran_budget"], r["budget_clamped_share"]) for r in rows] == [
        (256, None, 0.0),
        (4096, 300, 1.0),
    ]
    loaded = results.load_results([out])
    assert [(r.budget, r.ran_budget, r.budget_label) for r in loaded] == [
        (256, None, "256"),
        (4096, 300, "4096 (ran <=300)"),
    ]
    assert [row.label for row in report.build_table(loaded)] == [
        "m (budget=256, forcing=0)",
        "m (budget=4096 (ran <=300), forcing=0)",
    ]
    fig = plots.figure_budget(loaded)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["256", "4K\n(ran ≤300)"]
    assert (
        cli.main(
            [
                "sweep",
                "--model_args",
                "pretrained=m",
                "--tasks",
                "medqa",
                "--budgets",
                "256,4096",
                "--output_path",
                str(out),
            ]
        )
        == 0
    )  # all done: only the table is printed
    assert "budget=4096 (ran <=300) forcing=0" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_end_to_end_tiny_model(tmp_path, tiny_model, eval_data_dir, monkeypatch, capfd):
    """m1_budget on the tiny Qwen2, medqa --limit 3, budgets 16 and 32: lm-eval folders, traces, table."""
    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    from m1_harness import cli
    from m1_harness.thinking.lm import M1BudgetLM

    loads = []
    real_init = M1BudgetLM.__init__
    monkeypatch.setattr(M1BudgetLM, "__init__", lambda self, **kw: loads.append(kw) or real_init(self, **kw))
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
    ]
    assert cli.main(argv) == 0
    assert len(loads) == 1 and loads[0]["batch_size"] == 3  # one model for both settings
    # budget 32 ran first and answered budget 16 in flight (its probes' thinking calls: cuts of the
    # 32-token traces, 3 cache hits); budget 16 was then a pure replay of the trace cache
    captured = capfd.readouterr()
    summaries = [
        json.loads(line.split("m1_budget: ", 1)[1].rsplit("; trace records", 1)[0])
        for line in captured.err.splitlines()
        if line.startswith("m1_budget: {")
    ]
    assert len(summaries) == 2
    assert summaries[0]["cache_hits"] == 3 and summaries[0]["generated_tokens"] > 0
    assert summaries[1]["cache_misses"] == summaries[0]["cache_misses"]  # (counts run on): no miss since
    assert summaries[1]["cache_hits"] >= summaries[0]["cache_hits"] + 6
    assert (summaries[1]["context_tokens"], summaries[1]["generated_tokens"]) == (0, 0)
    rows = json.loads((out / "sweep.json").read_text())
    assert [(r["budget"], r["forcing"], r["n"]) for r in rows] == [(16, 0, 3), (32, 0, 3)]
    assert {(r.model_type, r.budget) for r in results.load_results([out])} == {("m1_budget", 16), ("m1_budget", 32)}
    for r in rows:
        recs = [
            json.loads(x) for x in (out / f"budget{r['budget']}_forcing0" / "traces.jsonl").read_text().splitlines()
        ]
        assert r["trace_records"] == len(recs) == 3
        assert r["mean_thinking_tokens"] == pytest.approx(sum(x["thinking_tokens"] for x in recs) / 3)
        assert r["hit_budget_share"] == sum(x["thinking_tokens"] == r["budget"] for x in recs) / 3
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(results_wilson(round(r["acc"] * 3), 3))
    work = [line for line in captured.out.splitlines() if line.startswith("engine work")]
    assert work == [
        f"engine work of this command: context_tokens={sum(r['context_tokens'] for r in rows)}, "
        f"cached_tokens={sum(r['cached_tokens'] for r in rows)}, "
        f"generated_tokens={sum(r['generated_tokens'] for r in rows)}"
    ]
    assert rows[0]["generated_tokens"] == 0 < rows[1]["generated_tokens"]  # budget 16: a pure replay
    served = [
        line.split(" served from", 1)[0]
        for line in captured.err.splitlines()
        if " served from the trace cache " in line
    ]
    assert served == ["m1_budget: 0 of 3 requests", "m1_budget: 3 of 3 requests"]
    assert "chat template is not applied" not in captured.err + captured.out  # the loaded m1_budget applies it
    assert cli.main(argv) == 0  # resumes: nothing to run
    rerun = capfd.readouterr().out.splitlines()
    assert rerun[-1] == (
        "engine work of this command: none (all 2 settings were finished by an earlier run; what "
        "that run generated is in sweep.csv)"
    )
    assert len(list(out.rglob("results_*.json"))) == 2
