"""The curation demo never hangs silently (issue 25 item 3): an unset recipe variable is an error before
any stage runs, a stage whose server does not answer gives up with a sentence, Ctrl-C stops it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repo_paths import REPO

from m1_harness.cli import main
from m1_harness.curation import StageError, run_recipe
from m1_harness.curation.cli import INTERRUPTED
from m1_harness.curation.plugin import builtin_stages


def test_an_unset_variable_in_a_recipe_is_an_error_before_any_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("M1_HARNESS_DATA", "/work/shared/data/eval")
    monkeypatch.delenv("TEACHER_URL", raising=False)
    monkeypatch.chdir(REPO)
    rc = main(["curate", "plugins/recipes/demo_local.yaml", "--workdir", str(tmp_path / "w")])
    assert rc == 1 and not (tmp_path / "w").exists()
    assert capsys.readouterr().err.strip() == (
        "m1-harness curate: recipe plugins/recipes/demo_local.yaml stage #4 (difficulty), models, base_url: $TEACHER_URL is not "
        "set: export TEACHER_URL=... before running (the recipe's comments say what it should name)"
    )


def _pool(tmp_path, n=6) -> Path:
    item = {"question": "Which?", "options": {"A": "yes", "B": "no"}, "answer_idx": "A", "answer": "yes"}
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({**item, "question": f"Which {i}?"}) + "\n" for i in range(n)))
    return path


def _recipe(pool, port, **api):
    return {
        "stages": [
            {"collect": {"sources": [{"path": str(pool), "source": "huatuo"}]}},
            {"distill": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "teacher", "concurrency": 2, **api}},
        ]
    }


def test_a_stage_whose_server_does_not_answer_gives_up_with_a_sentence(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = _recipe(_pool(tmp_path), port, max_retries=1, backoff=0.01, max_backoff=0.02, timeout=1)
    started = time.monotonic()
    with pytest.raises(StageError) as err:
        run_recipe(recipe, workdir=tmp_path / "w", registry=builtin_stages(), show_progress=False, log=lambda m: None)
    assert time.monotonic() - started < 30  # not one full retry cycle per item
    assert str(err.value).startswith(
        f"stage 'distill': its server does not answer (http://127.0.0.1:{port}/v1/chat/"
        "completions: giving up after 2 attempts: "
    )
    assert str(err.value).endswith("start it or correct its base_url, then rerun; the 0 finished items are kept")


@pytest.mark.subprocess
def test_ctrl_c_stops_a_stage_waiting_on_a_server(tmp_path, python_env):
    """A server that accepts and never answers: the stage sat in its retries and ignored Ctrl-C."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        recipe = tmp_path / "r.yaml"
        recipe.write_text(json.dumps({"workdir": str(tmp_path / "w"), **_recipe(_pool(tmp_path), port, timeout=600)}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "m1_harness", "curate", str(recipe), "--no-progress"],
            env=python_env,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 300
            while not (tmp_path / "w" / "01_distill" / "_progress.jsonl").exists():  # the stage is waiting now
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
            time.sleep(2)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"m1-harness curate: {INTERRUPTED}"
