"""Reading lm-eval result folders and the Table 1 report, from fixed result files
(tests/fixtures/analysis/runs, written by make_fixtures.py in lm-eval 0.4.13's layout)."""

import csv
import io

import pytest
from repo_paths import FIXTURES

from m1_harness import cli
from m1_harness.analysis import report, results

RUNS = FIXTURES / "analysis" / "runs"
M1 = "UCSC-VLAA/m1-7B-1K"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


def test_layout_found_and_settings_parsed():
    files = results.find_results_files([RUNS])
    assert len(files) == 12  # 4 + 4 budgets, 3 forcing rounds, 1 hf run
    assert all(
        f.name.startswith("results_") and f.parent.name in ("UCSC-VLAA__m1-7B-1K", "Qwen__Qwen2.5-7B-Instruct")
        for f in files
    )
    rs = results.load_results([RUNS])
    settings = {(r.model, r.budget, r.forcing) for r in rs}
    assert (QWEN, None, None) in settings  # lm-eval's own hf model: no budget
    assert (M1, 2048, 3) in settings  # s1 aliases max_tokens_thinking / thinking_n_ignore, string model_args
    assert {(b, f) for m, b, f in settings if m == M1} == {
        (512, 0),
        (1024, 0),
        (2048, 0),
        (4096, 0),
        (2048, 1),
        (2048, 2),
        (2048, 3),
    }
    hf = [r for r in rs if r.model_type == "hf"]
    assert sorted(r.task for r in hf) == ["medmcqa", "medqa_4options"]


def test_acc_n_and_items_from_samples():
    (r,) = [r for r in results.load_results([RUNS / "m1-7B-1K_b512_f0"]) if r.task == "m1_pubmedqa"]
    assert (r.acc, r.n, r.metric_key) == (0.65, 20, "acc,none")
    assert len(r.items) == 20 and sum(r.items.values()) == 13
    # without samples files there are no items, but acc and n still come from the results file
    (r2,) = [
        r for r in results.load_results([RUNS / "m1-7B-1K_b512_f0"], with_samples=False) if r.task == "m1_pubmedqa"
    ]
    assert r2.items == {} and (r2.acc, r2.n) == (0.65, 20)


def test_single_results_file_and_glob():
    f = next((RUNS / "qwen_hf").rglob("results_*.json"))
    assert len(results.load_results([f])) == 2
    assert len(results.load_results([str(RUNS / "m1-7B-1K_b*_f0")])) == 12
    with pytest.raises(results.ResultsError, match="^no such results path: .*nope .give lm-eval output folders"):
        results.load_results([RUNS / "nope"])


@pytest.mark.parametrize(
    "config,expected",
    [
        ({"model": "m1_budget", "model_args": "pretrained=x,thinking_budget=1024,forcing=2"}, (1024, 2)),
        ({"model": "m1_budget", "model_args": {"pretrained": "x", "thinking_budget": 512}}, (512, 0)),
        ({"model": "m1_budget", "model_args": "pretrained=x,thinking_budget=auto"}, ("auto", 0)),
        (
            {
                "model": "vllm",
                "model_args": "pretrained=x",
                "gen_kwargs": "max_tokens_thinking=2048,thinking_n_ignore=1",
            },
            (2048, 1),
        ),
        ({"model": "hf", "model_args": "pretrained=x,dtype=bfloat16"}, (None, None)),
        ({"model": "m1_budget", "model_args": "pretrained=x"}, (None, 0)),
    ],
)
def test_budget_and_forcing(config, expected):
    assert results.budget_and_forcing(config) == expected


def test_model_name_like_lm_eval():
    assert (
        results.model_name_of({"model_args": "pretrained=/data/models/m1-7B-1K,thinking_budget=1"})
        == "/data/models/m1-7B-1K"
    )
    assert results.model_name_of({"model_args": {"peft": "adapter", "pretrained": "base"}}) == "adapter"
    assert results.model_name_of({"model": "dummy", "model_args": ""}, "fallback") == "fallback"
    assert results.display_name("/data/models/m1-7B-1K/") == "m1-7B-1K"
    assert results.display_name(M1) == M1


def test_newest_run_wins(tmp_path):
    import shutil

    src = RUNS / "qwen_hf"
    shutil.copytree(src, tmp_path / "a")
    f = next((tmp_path / "a").rglob("results_*.json"))
    text = f.read_text().replace('"acc,none": 0.6,', '"acc,none": 0.95,')
    (f.parent / "results_2026-11-21T10-00-00.000000.json").write_text(text)
    (r,) = [r for r in results.load_results([tmp_path]) if r.task == "medqa_4options"]
    assert r.acc == 0.95


EXPECTED_MD = """\
| model | MedMC | MedQA | PubMed | MMLU-P | GPQA | Lancet | MedB4 | MedB5 | MedX | NEJM | Avg. |
|---|---|---|---|---|---|---|---|---|---|---|---|
| Qwen/Qwen2.5-7B-Instruct | 55.00 [34.21, 74.18] | 60.00 [38.66, 78.12] | – | – | – | – | – | – | – | – | 57.50* |
| UCSC-VLAA/m1-7B-1K (budget=512, forcing=0) | 50.00 [29.93, 70.07] | 55.00 [34.21, 74.18] | 65.00 [43.29, 81.88] | – | – | – | – | – | – | – | 56.67* |
| UCSC-VLAA/m1-7B-1K (budget=2048, forcing=1) | – | 70.00 [48.10, 85.45] | – | – | – | – | – | – | – | – | 70.00* |
| paper: m1-7B-1K | 58.26 | 71.01 | 77.50 | 65.15 | 51.79 | 64.32 | 58.77 | 51.95 | 16.29 | 62.52 | 57.76 |

Accuracy in %; brackets: 95% Wilson score interval. Avg.: plain mean of the benchmarks present.

\\* Avg. over the benchmarks present only:
- 2 of 10 (missing PubMed, MMLU-P, GPQA, Lancet, MedB4, MedB5, MedX, NEJM): Qwen/Qwen2.5-7B-Instruct
- 3 of 10 (missing MMLU-P, GPQA, Lancet, MedB4, MedB5, MedX, NEJM): UCSC-VLAA/m1-7B-1K (budget=512, forcing=0)
- 1 of 10 (missing MedMC, PubMed, MMLU-P, GPQA, Lancet, MedB4, MedB5, MedX, NEJM): UCSC-VLAA/m1-7B-1K (budget=2048, forcing=1)
"""
# Cells checked by hand with Wilson's formula: 13/20 -> [43.29, 81.88], 11/20 -> [34.21, 74.18],
# 12/20 -> [38.66, 78.12]; the hf run's lm-eval task names medmcqa / medqa_4options land in MedMC / MedQA.
SUBSET = [RUNS / "qwen_hf", RUNS / "m1-7B-1K_b512_f0", RUNS / "m1-7B-1K_b2048_f1"]


def test_report_markdown_exact(tmp_path, capsys):
    rc = cli.main(["report", *map(str, SUBSET), "--reference", "m1-7B-1K", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "table1.md").read_text() == EXPECTED_MD
    assert capsys.readouterr().out == EXPECTED_MD


def test_report_csv(tmp_path):
    cli.main(["report", *map(str, SUBSET), "--reference", "m1-7B-1K", "--out", str(tmp_path)])
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table1.csv").read_text())))
    assert [r["label"] for r in rows] == [
        QWEN,
        f"{M1} (budget=512, forcing=0)",
        f"{M1} (budget=2048, forcing=1)",
        "paper: m1-7B-1K",
    ]
    r = rows[1]
    assert (r["budget"], r["forcing"], r["source"]) == ("512", "0", "measured")
    assert float(r["PubMed"]) == 65.0 and r["PubMed_n"] == "20"
    assert float(r["PubMed_low"]) == pytest.approx(43.2854, abs=1e-4)
    assert float(r["avg"]) == pytest.approx((50 + 55 + 65) / 3, abs=1e-4)
    assert r["avg_n_benchmarks"] == "3" and r["missing"].split(";")[0] == "MMLU-P"
    paper = rows[3]
    assert paper["source"] == "paper" and float(paper["MedX"]) == 16.29 and float(paper["avg"]) == 57.76


def test_reference_table_is_the_papers():
    # Avg. is the plain mean of the ten columns in every published row (to rounding)
    for name, vals in report.PAPER_TABLE1.items():
        assert len(vals) == 11
        assert sum(vals[:10]) / 10 == pytest.approx(vals[10], abs=0.011), name
    assert report.PAPER_TABLE1["m1-32B-1K"][1] == 83.50
    assert len(report.reference_rows()) == 9


def test_bootstrap_cells_seeded():
    rs = results.load_results([RUNS / "m1-7B-1K_b512_f0"])
    a = report.build_table(rs, ci="bootstrap", iters=2000, seed=5)
    b = report.build_table(rs, ci="bootstrap", iters=2000, seed=5)
    assert [(c.low, c.high) for c in a[0].cells.values()] == [(c.low, c.high) for c in b[0].cells.values()]
    cell = a[0].cells["PubMed"]
    assert cell.low < 65.0 < cell.high


def test_paired_comparisons_use_items():
    rs = results.load_results([RUNS])
    pairs = report.paired_comparisons(rs)
    forcing = [p for p in pairs if p["model"] == M1 and p["vary"] == "forcing"]
    assert [(p["a"], p["b"]) for p in forcing] == [(0, 1), (1, 2), (2, 3)]
    (p,) = [p for p in pairs if p["model"] == M1 and p["task"] == "medqa" and p["vary"] == "budget" and p["a"] == 512]
    r512, r1024 = (
        next(r for r in rs if r.model == M1 and r.task == "medqa" and r.budget == b and r.forcing == 0)
        for b in (512, 1024)
    )
    assert p["a_only"] == sum(1 for k in r512.items if r512.items[k] and not r1024.items[k])
    assert p["b_only"] == sum(1 for k in r512.items if r1024.items[k] and not r512.items[k])
    assert p["acc_a"] == 0.55 and p["acc_b"] == 0.65
    md = report.paired_markdown(pairs)
    assert "McNemar exact p" in md and "forcing 0 → 1 (budget=2048)" in md
