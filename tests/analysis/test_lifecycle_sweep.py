"""A sweep interrupted at any point keeps what finished and says so in one line (issue 22 class 9,
issue 25 item 2)."""

from __future__ import annotations

import pytest
from analysis.test_analysis_sweep import FakeEvaluate

from m1_harness.analysis import sweep
from m1_harness.cli import main
from m1_harness.errors import Interrupted


def test_an_interrupt_right_after_lm_eval_saved_leaves_a_folder_the_sweep_accepts(tmp_path, monkeypatch):
    """The manifest was written after lm-eval's save: Ctrl-C between the two left results the rerun refused."""
    out = tmp_path / "sweep"
    save = sweep.save_like_lm_eval

    def save_then_ctrl_c(tracker, results):
        save(tracker, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "save_like_lm_eval", save_then_ctrl_c)
    with pytest.raises(Interrupted):
        sweep.run_sweep("pretrained=m", ["medqa"], [256, 512], [0], out, evaluate=FakeEvaluate(), echo=lambda *a: None)
    monkeypatch.setattr(sweep, "save_like_lm_eval", save)
    again = FakeEvaluate()
    lines = []
    rows = sweep.run_sweep("pretrained=m", ["medqa"], [256, 512], [0], out, evaluate=again, echo=lines.append)
    assert [c[:2] for c in again.calls] == [(256, 0)]  # 512 was saved before the interrupt: not redone
    assert lines[0] == f"[1/2] budget=512 forcing=0: results of this run exist in {out / 'budget512_forcing0'}, skipped"
    assert len(rows) == 2


def test_ctrl_c_in_a_sweep_is_one_line_saying_what_was_kept(tmp_path, monkeypatch, capsys):
    class CtrlCOnSecond(FakeEvaluate):
        def __call__(self, **kw):
            if self.calls:
                raise KeyboardInterrupt
            return super().__call__(**kw)

    out = tmp_path / "sweep"
    monkeypatch.setattr(sweep, "_load_lm_eval_extensions", lambda: None)
    real = sweep.run_sweep
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **kw: real(*a, **{**kw, "evaluate": CtrlCOnSecond()}))
    rc = main(
        ["sweep", "--model_args", "pretrained=m", "--tasks", "medqa", "--budgets", "256,512", "--output_path", str(out)]
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err and rc == 130
    assert err.strip().splitlines()[-1] == (
        f"m1-harness sweep: interrupted (Ctrl-C) during [2/2] budget=256 forcing=0: 1 of 2 settings finished and are "
        f"kept in {out} (budget=512 forcing=0); the requests the interrupted setting finished are in the trace cache. "
        "Rerun the same command to resume."
    )
