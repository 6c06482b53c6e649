"""What enters from an engine is checked, what generated it keys the trace cache, and faults of a server
(wrong results, trickled answers, a replica failing for good, seeds it ignores) end in a clear
sentence or a dropped replica, never in a wrong or lost result (issue 22 classes 1, 2, 6, 8; issue 26
item 4). Against a real local completion server of vLLM's shape (tests/helpers/hf_completion_server.py,
the tiny model on transformers) behind the fault proxy (tests/helpers/fault_proxy.py), one fault per mode."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
from fault_proxy import FaultProxy
from hf_completion_server import HFCompletionServer
from sglang_standin import SGLangStandIn

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.base import (
    BadResult,
    EngineError,
    GenRequest,
    GenResult,
    check_result,
    weights_fingerprint,
)
from m1_harness.thinking.engines.server import ServerEngine
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest
from m1_harness.thinking.tracecache import CachingEngine, TraceCache

BUDGET, ANSWER = 24, 8
QUESTIONS = ["Which nerve is injured in wrist drop?", "What is the mechanism of action of aspirin?"]
M1 = PRESETS["m1"].with_overrides(think_end=("ism",))  # a string the random model writes: forcing happens


@pytest.fixture(scope="module")
def server(tiny_model):
    cards = [{"id": "ckpt-1000", "root": "/ckpts/step-1000"}, {"id": "ckpt-2000", "root": "/ckpts/step-2000"}]
    with HFCompletionServer(tiny_model, cards) as srv:
        yield srv


def _engine(tiny_model, url, **kw):
    kw.setdefault("served_model", "ckpt-1000")
    return ServerEngine(str(tiny_model), url, backoff=0.01, max_backoff=0.05, max_retries=2, **kw)


def _requests(tok):
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q in QUESTIONS
    ]
    return [BudgetRequest(tok.encode(p, add_special_tokens=False), BUDGET, 1, ANSWER) for p in prompts]


def _run(engine):
    return [
        (t.thinking_ids, t.answer_ids, t.forcing_rounds)
        for t in BudgetForcer(engine, M1).run(_requests(engine.tokenizer), progress=False)
    ]


@pytest.fixture(scope="module")
def reference(server, tiny_model):
    eng = _engine(tiny_model, server.base_url)
    try:
        return _run(eng)
    finally:
        eng.close()


# -- class 2: one result check --------------------------------------------------------------------
def test_check_result_names_what_is_wrong():
    req = GenRequest([1, 2, 3], 64, stop_token_ids=[7])
    check_result(req, GenResult([5] * 64, "length"), 100, 4096)
    check_result(req, GenResult([5, 5, 7], "stop", 7), 100, 4096)
    check_result(GenRequest([1] * 4090, 64), GenResult([5] * 6, "length"), 100, 4096)  # the context is full
    bad = [
        (GenResult([5] * 71, "length"), "71 ids for max_tokens=64"),
        (GenResult([5] * 63, "length"), "finish 'length' after 63 ids, but max_tokens=64"),
        (GenResult([-3, 5], "stop", 7), "id -3 at position 0 is not a token id of this model (vocabulary of 100)"),
        (GenResult([5, 100], "length"), "id 100 at position 1 is not a token id of this model (vocabulary of 100)"),
        (
            GenResult([5, 7, 5], "stop", 7),
            "finish 'stop' on 7, which is not the last id and a stop of the request (stop ids [7], stop strings [])",
        ),
        (
            GenResult([5, 6], "stop", 6),
            "finish 'stop' on 6, which is not the last id and a stop of the request (stop ids [7], stop strings [])",
        ),
        (GenResult([7, 5, 7], "stop", 7), "stop id 7 at position 0 of 3: generation went on past a stop"),
        (GenResult([5], "abort"), "finish_reason='abort' (expected stop or length)"),
    ]
    for res, why in bad:
        with pytest.raises(BadResult) as err:
            check_result(req, res, 100, 4096)
        assert str(err.value) == f"engine result for a prompt of 3 ids: {why}"


@pytest.mark.parametrize("fault", ["extra_ids", "negative_id", "short_length"])
def test_a_wrong_server_result_is_retried_and_never_used_or_cached(server, tiny_model, reference, tmp_path, fault):
    with FaultProxy(server.base_url, {1: fault, 3: fault}) as proxy:
        eng = _engine(tiny_model, proxy.base_url)
        cache = TraceCache(tmp_path / "c.sqlite", eng.model_identity)
        try:
            got = _run(CachingEngine(eng, cache))
        finally:
            eng.close()
    assert got == reference
    assert all(len(think) <= BUDGET and len(answer) <= ANSWER for think, answer, _ in got)
    # by arrival (the log is in completion order, and requests run in parallel)
    assert [o for _, _, o in sorted(proxy.log)[:4]] == [fault, "ok", fault, "ok"]
    assert eng.replicas[0].client.stats["retry_bad_result"] == 2
    # what the cache holds is what a clean run gives: a replay from it sends nothing
    with FaultProxy(server.base_url, always="500") as dead:
        again = _engine(tiny_model, dead.base_url)
        assert _run(CachingEngine(again, TraceCache(tmp_path / "c.sqlite", again.model_identity))) == reference
        assert dead.log == []


def test_a_server_that_keeps_sending_wrong_results_is_a_clear_error(server, tiny_model, tmp_path):
    with FaultProxy(server.base_url, always="negative_id") as proxy:
        eng = _engine(tiny_model, proxy.base_url)
        cache = TraceCache(tmp_path / "c.sqlite", eng.model_identity)
        with pytest.raises(EngineError) as err:
            _run(CachingEngine(eng, cache))
        eng.close()
    msg = str(err.value)
    assert msg.startswith(
        f"every server stopped answering or kept failing ({proxy.base_url}: {proxy.base_url}"
        "/completions: giving up after 3 attempts: "
    )
    assert "id -3 at position 0 is not a token id of this model (vocabulary of" in msg
    assert msg.endswith("finished rounds are in the trace cache: fix or restart the servers and rerun to resume")
    assert cache.db.execute("SELECT count(*) FROM gen").fetchone()[0] == 0


# -- class 1: the model identity is what serves the tokens ----------------------------------------
def test_another_served_checkpoint_is_a_trace_cache_miss(server, tiny_model, tmp_path, eval_data_dir):
    from m1_harness.thinking.lm import M1BudgetLM

    def lm(served):
        return M1BudgetLM(
            pretrained=str(tiny_model),
            engine="server",
            base_url=server.base_url,
            served_model=served,
            cache_dir=str(tmp_path),
            cache="on",
        )

    seen = []
    for served in ("ckpt-1000", "ckpt-2000", "ckpt-1000"):
        m = lm(served)
        assert m._cache.model_id == m.engine.model_identity
        _run(m._engine_for(0.0, 1.0))
        seen.append((m.engine.model_identity, m._cache.hits, m._cache.misses))
        m.engine.close()
    (id1, h1, m1), (id2, h2, m2), (id3, h3, m3) = seen
    assert id1 == id3 == 'server|vllm|{"id": "ckpt-1000", "root": "/ckpts/step-1000"}'
    assert id2 == 'server|vllm|{"id": "ckpt-2000", "root": "/ckpts/step-2000"}'
    assert (h1, h2, m2) == (0, 0, m1) and (h3, m3) == (m1, 0)  # ckpt-2000: all misses; ckpt-1000 again: all hits


def test_a_card_without_root_is_told_apart_by_host_and_replicas_must_agree(server, tiny_model):
    with HFCompletionServer(tiny_model, [{"id": "ckpt-1000", "root": "/other/weights"}]) as other:
        with pytest.raises(EngineError) as err:
            _engine(tiny_model, f"{server.base_url},{other.base_url}")
    assert str(err.value).startswith(
        f"base_url={server.base_url}, {other.base_url}: the replicas serve different models ("
    )
    with HFCompletionServer(tiny_model, [{"id": "m"}]) as bare:
        eng = _engine(tiny_model, bare.base_url, served_model="m")
        host = bare.base_url.split("/")[2]
        assert eng.model_identity == f'server|vllm|{{"host": "{host}", "id": "m"}}'
        eng.close()
    with HFCompletionServer(tiny_model, [{"id": "tiny", "root": str(tiny_model)}]) as local:  # e.g. owned.py's
        eng = _engine(tiny_model, local.base_url, served_model="tiny")
        assert eng.model_identity == (
            f'server|vllm|{{"id": "tiny", "root": "{tiny_model}", "weights": "{weights_fingerprint(tiny_model)}"}}'
        )
        eng.close()


# -- class 8: deadlines and failover --------------------------------------------------------------
def test_timeout_bounds_a_whole_response_not_each_read(server, tiny_model):
    with FaultProxy(server.base_url, always="trickle", trickle_s=0.5) as proxy:
        eng = ServerEngine(str(tiny_model), proxy.base_url, served_model="ckpt-1000", timeout=2, max_retries=0)
        start = time.monotonic()
        with pytest.raises(EngineError) as err:
            eng.generate([GenRequest(eng.tokenizer.encode("Hello"), 4)])
        took = time.monotonic() - start
        eng.close()
    assert took < 5, took  # one attempt of 2 s (a trickle of one byte per 0.5 s held it > 60 s)
    assert "no whole response within 2s (ReadTimeout)" in str(err.value)


def test_curation_client_timeout_is_a_deadline_per_response():
    from teacher_server import TeacherServer

    from m1_harness.curation.client import ApiError, ChatClient

    with TeacherServer() as teacher, FaultProxy(teacher.base_url, always="trickle", trickle_s=0.5) as proxy:
        client = ChatClient(proxy.base_url, model="teacher", timeout=2, max_retries=0)
        start = time.monotonic()
        with pytest.raises(ApiError) as err:
            client.chat([{"role": "user", "content": "Which nerve is injured in wrist drop?"}])
        assert time.monotonic() - start < 5
    assert err.value.kind == "timeout"


def test_a_replica_failing_every_request_is_dropped_like_a_dead_one(server, tiny_model, reference, caplog):
    with FaultProxy(server.base_url, always="500") as bad, FaultProxy(server.base_url) as good:
        eng = _engine(tiny_model, f"{bad.base_url},{good.base_url}")
        with caplog.at_level(logging.WARNING):
            got = _run(eng)
        summary = eng.run_summary()
        eng.close()
    assert got == reference
    assert [(r["url"], r["alive"]) for r in summary["replicas"]] == [(bad.base_url, False), (good.base_url, True)]
    assert summary["requests_moved"] >= 1
    assert sum("stopped answering or kept failing" in r.message for r in caplog.records) == 1


# -- class 6, cache half: a failing cache turns itself off -----------------------------------------
def test_a_full_cache_turns_itself_off_once_and_the_run_completes(server, tiny_model, reference, tmp_path, caplog):
    eng = _engine(tiny_model, server.base_url)
    cache = TraceCache(tmp_path / "c.sqlite", eng.model_identity)
    pages = cache.db.execute("PRAGMA page_count").fetchone()[0]
    cache.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # then filled: SQLite's own "database or disk is full"
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        for k in range(1000):
            cache.db.execute("INSERT INTO gen (key, ids) VALUES (?, ?)", (f"filler-{k}", "x" * 300))
            cache.db.commit()  # kept (SQLITE_FULL rolls back the transaction it happens in)
    with caplog.at_level(logging.WARNING):
        got = _run(CachingEngine(eng, cache))
    eng.close()
    assert got == reference
    assert cache.failed == "OperationalError: database or disk is full"
    warned = [r.message for r in caplog.records if "trace cache" in r.message]
    assert len(warned) == 1 and "is off for the rest of this run" in warned[0]


# -- issue 26 item 4: seeds a server ignores -------------------------------------------------------
@pytest.mark.parametrize("deterministic", [False, True])
def test_sglang_without_deterministic_inference_refuses_cache_and_probes(
    server, tiny_model, tmp_path, deterministic, caplog
):
    from m1_harness.thinking.lm import M1BudgetLM
    from m1_harness.thinking.tracecache import CacheRefused

    with SGLangStandIn(server.base_url, deterministic_inference=deterministic) as sgl:

        def lm(cache):
            return M1BudgetLM(
                pretrained=str(tiny_model),
                engine="server",
                base_url=sgl.base_url,
                served_model="ckpt-1000",
                server_api="sglang",
                cache_dir=str(tmp_path),
                cache=cache,
            )

        m = lm("on")
        assert isinstance(m._engine_for(0.0, 1.0), CachingEngine)  # greedy: unaffected
        if deterministic:
            assert isinstance(m._engine_for(0.7, 0.9), CachingEngine)
            assert m.engine.seeded_sampling_problem() is None
        else:
            with pytest.raises(CacheRefused) as err:
                m._engine_for(0.7, 0.9)
            assert str(err.value) == (
                f"m1_budget: cache=on with seeded sampling (temperature=0.7): {sgl.base_url}: SGLang runs without "
                "--enable-deterministic-inference, so it ignores request seeds and seeded sampling does not repeat; "
                "cached traces and sweep probes would be wrong: restart it with --enable-deterministic-inference "
                "(SGLang), sample greedily (temperature=0), or pass cache=off"
            )
            auto = lm("auto")
            with caplog.at_level(logging.WARNING):
                assert auto._engine_for(0.7, 0.9) is auto.engine  # no cache, so no probes
            assert any("--enable-deterministic-inference" in r.message for r in caplog.records)
            auto.engine.close()
        m.engine.close()


@pytest.mark.parametrize("fault", [None, "drop_seed"])
def test_a_vllm_server_is_checked_by_two_calls_with_one_seed(server, tiny_model, fault):
    with FaultProxy(server.base_url, always=fault) as proxy:
        eng = _engine(tiny_model, proxy.base_url, temperature=0.7, top_p=0.9)
        problem = eng.seeded_sampling_problem()
        eng.close()
        assert len(proxy.log) == 2
    if fault is None:
        assert problem is None
    else:
        assert problem == (
            f"{proxy.base_url} (vllm) gave two different samples for one seed, so seeded sampling does "
            "not repeat there; cached traces and sweep probes would be wrong: restart it with "
            "--enable-deterministic-inference (SGLang), sample greedily (temperature=0), or pass cache=off"
        )


def test_an_in_process_engine_result_past_max_tokens_is_a_clear_error_and_never_cached(tmp_path):
    from m1_harness.thinking.engines.scripted import ScriptedEngine

    class Overrun(ScriptedEngine):  # an engine bug: 7 ids past what was asked
        def _one(self, req):
            res = super()._one(req)
            res.token_ids = res.token_ids + [105] * 7
            return res

    eng = Overrun({})
    cache = TraceCache(tmp_path / "c.sqlite", "overrun")
    with pytest.raises(BadResult) as err:
        CachingEngine(eng, cache).generate([GenRequest(eng.tokenizer.encode("Q?"), 64)])
    assert str(err.value) == "engine result for a prompt of 2 ids: 71 ids for max_tokens=64"
    assert cache.db.execute("SELECT count(*) FROM gen").fetchone()[0] == 0
