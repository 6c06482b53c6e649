"""engine=server mistakes that need no running model server: each is one sentence saying what to do."""

from __future__ import annotations

import pytest
from vllm_server import free_port

from m1_harness.thinking.engines.base import EngineError


def test_server_engine_needs_base_url(tiny_model):
    from m1_harness.thinking.lm import M1BudgetLM, ModelArgError

    with pytest.raises(ModelArgError) as err:
        M1BudgetLM(pretrained=str(tiny_model), engine="server", cache="off")
    assert str(err.value) == (
        "m1_budget: engine=server needs base_url=http://HOST:PORT/v1 (several: separated by commas or spaces)"
    )


@pytest.mark.parametrize("base_url", ["127.0.0.1:8000/v1", "http://a:1/v1, ftp://b/v1"])
def test_base_url_must_be_http_urls(tiny_model, base_url):
    from m1_harness.thinking.engines.server import ServerEngine

    with pytest.raises(EngineError) as err:
        ServerEngine(str(tiny_model), base_url)
    assert str(err.value) == (
        f"base_url={base_url!r}: give the server's OpenAI API root, e.g. "
        "base_url=http://127.0.0.1:8000/v1 (several: separate them by commas or spaces)"
    )


def test_split_urls_takes_commas_and_spaces():
    from m1_harness.thinking.engines.server import split_urls

    assert split_urls("http://a:1/v1/, http://b:2/v1 http://a:1/v1") == ["http://a:1/v1", "http://b:2/v1"]


def test_no_server_listening_is_named(tiny_model):
    from m1_harness.thinking.engines.server import ServerEngine

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError) as err:
        ServerEngine(str(tiny_model), url, backoff=0.01)
    msg = str(err.value)
    assert msg.startswith(
        f"base_url={url}: the server does not answer GET /models ({url}/models: giving up after "
        "3 attempts: ConnectError"
    )
    assert msg.endswith("start it first (docs/engines.md#served-models-one-replica-or-many) or fix base_url")


def test_max_concurrency_must_be_positive(tiny_model):
    from m1_harness.thinking.engines.server import ServerEngine

    with pytest.raises(
        EngineError, match=r"^max_concurrency=0: must be at least 1 \(requests in flight per replica\)$"
    ):
        ServerEngine(str(tiny_model), "http://127.0.0.1:1/v1", max_concurrency=0)


def test_server_api_and_data_parallel_size_are_checked_before_any_request(tiny_model):
    from m1_harness.thinking.engines.server import ServerEngine

    with pytest.raises(EngineError) as err:
        ServerEngine(str(tiny_model), "http://127.0.0.1:1/v1", server_api="tgi")
    assert str(err.value) == "server_api='tgi': choose vllm or sglang (the server's completion dialect)"
    with pytest.raises(EngineError) as err:
        ServerEngine(str(tiny_model), "http://127.0.0.1:1/v1", data_parallel_size=0)
    assert str(err.value) == "data_parallel_size=0: must be at least 1 (engine ranks per server)"


def test_streaming_and_data_parallel_size_reach_the_server_engine_without_an_ignored_warning(tiny_model, caplog):
    """Both apply to engine=server now (they were vLLM-only): no "do not apply" warning; a bad value of
    either reaches the engine's check."""
    from m1_harness.thinking.lm import M1BudgetLM

    with pytest.raises(EngineError, match=r"^data_parallel_size=0: must be at least 1"):
        M1BudgetLM(
            pretrained=str(tiny_model),
            engine="server",
            base_url="http://127.0.0.1:1/v1",
            cache="off",
            streaming=False,
            data_parallel_size=0,
            server_api="vllm",
        )
    assert "do not apply" not in caplog.text
    with pytest.raises(EngineError) as err:  # engine=vllm took 0 for 1 without a word
        M1BudgetLM(pretrained=str(tiny_model), engine="vllm", cache="off", data_parallel_size=0)
    assert str(err.value) == "data_parallel_size=0: must be at least 1 (engine ranks per server)"


def test_max_concurrency_reaches_the_owned_data_parallel_server_and_is_ignored_otherwise(
    tiny_model, caplog, monkeypatch
):
    """engine=vllm with data_parallel_size > 1 drives its own server, so max_concurrency applies (no warning);
    with one engine in process it does not (warned). vLLM is stubbed out: the run stops at its import."""
    from m1_harness.thinking.engines import owned
    from m1_harness.thinking.engines import vllm as vllm_engine
    from m1_harness.thinking.lm import M1BudgetLM

    def no_vllm():
        raise ImportError("vllm stubbed out by the test")

    monkeypatch.setattr(vllm_engine, "import_vllm", no_vllm)
    monkeypatch.setattr(owned, "import_vllm", no_vllm)  # the owned server's own reference to it
    with pytest.raises(ImportError, match="stubbed out"):
        M1BudgetLM(pretrained=str(tiny_model), engine="vllm", data_parallel_size=2, max_concurrency=64, cache="off")
    assert "do not apply" not in caplog.text
    with pytest.raises(ImportError, match="stubbed out"):
        M1BudgetLM(pretrained=str(tiny_model), engine="vllm", max_concurrency=64, cache="off")
    assert "m1_budget: ['max_concurrency'] do not apply to the vllm engine and are ignored" in caplog.text
