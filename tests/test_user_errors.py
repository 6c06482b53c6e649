"""A user's mistake gets one sentence that names the argument, file or line, not a traceback (issue 15).

Each case is checked with its exact message, through the entry point a user types."""

import subprocess
import sys

import pytest

from m1_harness.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.err.strip()


@pytest.mark.subprocess
def test_lm_eval_prints_an_m1_budget_mistake_as_one_sentence(tmp_path, python_env):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "m1_budget",
            "--model_args",
            "pretrained=org/x,dtype=float99",
            "--tasks",
            "medqa",
            "--limit",
            "1",
        ],
        env=python_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "lm_eval: error: m1_budget: dtype='float99'; choose one of auto, bfloat16, float16, float32"
    )


def test_model_args_win_over_lm_eval_flags_instead_of_a_type_error():
    """device= in --model_args beside lm-eval's own --device was 'got multiple values for keyword argument'."""
    from m1_harness.thinking.lm import M1BudgetLM, ModelArgError

    with pytest.raises(ModelArgError, match="dtype='float99'"):  # reached the argument checks: no TypeError
        M1BudgetLM.create_from_arg_string(
            "pretrained=org/x,device=cpu,batch_size=2,dtype=float99",
            {"device": "cuda:0", "batch_size": 1, "max_batch_size": None},
        )


def test_non_utf8_files_are_named(tmp_path, capsys):
    from m1_harness.data import DataError, load_items

    blob = tmp_path / "medqa.jsonl"
    blob.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DataError) as err:
        load_items("medqa", tmp_path)
    assert str(err.value) == f"{blob}: not UTF-8 text (byte 0 cannot be decoded): save it as UTF-8 JSON"
    rc, err_text = run_cli(capsys, "train", "--data", str(blob), "--output", str(tmp_path / "o"), "--model", "x")
    assert (rc, err_text) == (
        2,
        f"m1-harness train: {blob}: not UTF-8 text (byte 0 cannot be decoded): save it as UTF-8 JSON",
    )
    rc, err_text = run_cli(capsys, "curate", str(blob))
    assert (rc, err_text) == (1, f"m1-harness curate: recipe {blob}: not UTF-8 text (byte 0 cannot be decoded)")


def test_recipe_mistakes_name_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "r.yaml"
    bad.write_text("stages:\n  - name: collect\n    params: [1, 2\n")
    rc, err_text = run_cli(capsys, "curate", str(bad))
    assert rc == 1 and err_text.startswith(f"m1-harness curate: recipe {bad}:4: not valid YAML (expected ',' or ']'")
    rc, err_text = run_cli(capsys, "curate", str(tmp_path / "none.yaml"))
    assert (rc, err_text) == (1, f"m1-harness curate: recipe {tmp_path / 'none.yaml'}: no such file")


def test_plot_and_report_check_their_arguments_first(tmp_path, capsys):
    rc, err_text = run_cli(capsys, "plot", str(tmp_path), "--out", str(tmp_path / "f"), "--format", "png,jpg")
    assert (rc, err_text) == (
        2,
        "m1-harness plot: error: --format 'png,jpg': choose from pdf, png, svg (comma-separated)",
    )
    (tmp_path / "file").write_text("")
    rc, err_text = run_cli(capsys, "report", str(tmp_path), "--out", str(tmp_path / "file" / "t"))
    assert (rc, err_text) == (
        2,
        f"m1-harness report: error: --out={str(tmp_path / 'file' / 't')!r} cannot be written "
        f"({str(tmp_path / 'file')!r} is a file, not a folder): choose a folder you can write to",
    )


def test_sweep_names_an_unknown_task_before_loading_the_model(tmp_path, capsys, lm_eval_task_index):
    rc, err_text = run_cli(
        capsys,
        "sweep",
        "--model_args",
        "pretrained=/no/such/model",
        "--tasks",
        "medqa,medqa_typo",
        "--budgets",
        "8",
        "--output_path",
        str(tmp_path / "s"),
    )
    assert (rc, err_text.splitlines()[-1]) == (
        2,
        "m1-harness sweep: error: --tasks: no task or group named medqa_typo; "
        "did you mean medqa? (`lm_eval ls tasks` lists them; add task folders "
        "with --include_path)",
    )
    rc, err_text = run_cli(
        capsys, "sweep", "--tasks", "medqa", "--budgets", "8,x", "--output_path", str(tmp_path / "s")
    )
    assert (rc, err_text) == (2, "m1-harness sweep: error: --budgets takes comma-separated integers, got '8,x'")
