"""The API stages against a real local HTTP server: retries, cache, key hygiene, crash-resume, e2e."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from repo_paths import SHARED_TRAIN
from teacher_server import TeacherServer, answer_letter, domain_reply, m1_block
from waiting import wait_for

from m1_harness.curation import StageError, run_recipe
from m1_harness.curation.client import ApiError, ChatClient, ResponseCache
from m1_harness.curation.items import read_jsonl
from m1_harness.curation.mesh import QUALIFIERS
from m1_harness.curation.plugin import builtin_stages
from m1_harness.scoring import score

TRAIN = SHARED_TRAIN / "huatuogpt_o1_demo_sft.jsonl"
SECRET = "sk-test-5ecret-value-never-written-0123456789"


@pytest.fixture
def server():
    with TeacherServer(hang_s=1.5) as s:
        yield s


@pytest.fixture(scope="module")
def train_items():
    return list(read_jsonl(TRAIN))


def _pool(tmp_path, items) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def _run(recipe, workdir, **kw):
    return run_recipe(recipe, workdir=workdir, registry=builtin_stages(), show_progress=False, log=lambda m: None, **kw)


def _api(server, model="teacher", **extra):
    return {"base_url": server.base_url, "model": model, "backoff": 0.01, "max_backoff": 0.05, "timeout": 0.5, **extra}


# ---------------------------------------------------------------------------------------------------
# client


def test_client_retries_every_transient_fault_then_succeeds(server, tmp_path):
    server.faults = {1: "429", 2: "500", 3: "timeout", 4: "malformed", 5: "nochoices", 6: "503"}
    client = ChatClient(server.base_url, "teacher", timeout=0.5, backoff=0.01, max_backoff=0.05)
    prompt = "Return your final response within \\boxed{}.\nWhich?\nA. x\nB. y"
    resp = client.chat([{"role": "user", "content": prompt}])
    letter = answer_letter("teacher", "Which?\nA. x\nB. y")
    assert resp.content.endswith(f"\\boxed{{{letter}}}.")
    assert server.requests == 7
    assert client.stats["retry_http_429"] == 1 and client.stats["retry_http_500"] == 1
    assert client.stats["retry_timeout"] == 1 and client.stats["retry_malformed_json"] == 2
    assert client.stats["retry_http_503"] == 1


def test_client_gives_up_after_max_retries_and_on_client_errors(server, monkeypatch):
    server.faults = {n: "500" for n in range(1, 10)}
    client = ChatClient(server.base_url, "teacher", max_retries=2, backoff=0.01)
    with pytest.raises(ApiError, match="giving up after 3 attempts"):
        client.chat([{"role": "user", "content": "hi"}])
    assert server.requests == 3
    monkeypatch.setenv("M1_TEST_KEY", SECRET)
    server.faults = {4: "400echo"}
    keyed = ChatClient(server.base_url, "teacher", api_key_env="M1_TEST_KEY", backoff=0.01)
    with pytest.raises(ApiError) as err:
        keyed.chat([{"role": "user", "content": "hi"}])
    assert server.requests == 4  # a 400 is not retried
    assert SECRET not in str(err.value) and "***" in str(err.value)
    assert SECRET not in repr(keyed)
    with pytest.raises(ValueError, match="M1_UNSET_KEY"):
        ChatClient(server.base_url, "teacher", api_key_env="M1_UNSET_KEY")


def test_cache_is_keyed_by_model_and_request(server, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    a = ChatClient(server.base_url, "teacher", cache=cache)
    msgs = [{"role": "user", "content": "Return your final response within \\boxed{}.\nQ\nA. 1\nB. 2"}]
    first = a.chat(msgs)
    again = ChatClient(server.base_url.replace("127.0.0.1", "localhost"), "teacher", cache=cache).chat(msgs)
    assert (first.cached, again.cached, again.content) == (False, True, first.content)
    a.chat(msgs, temperature=0.7)  # other sampling parameters: another request
    ChatClient(server.base_url, "other-model", cache=cache).chat(msgs)
    assert server.requests == 3 and len(cache) == 3


# ---------------------------------------------------------------------------------------------------
# stages


def _distill_recipe(pool, server, **api):
    return {
        "stages": [
            {"collect": {"sources": [{"path": str(pool), "source": "huatuo"}]}},
            {"distill": _api(server, **api)},
            "verify",
        ]
    }


def test_distill_with_faults_cache_and_key_hygiene(server, tmp_path, train_items, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", SECRET)
    items = train_items[:24]
    pool = _pool(tmp_path, items)
    server.faults = {2: "429", 5: "500", 9: "timeout", 13: "malformed"}
    recipe = _distill_recipe(pool, server, api_key_env="TEACHER_KEY", concurrency=4)
    res = _run(recipe, tmp_path / "w")
    assert server.auth_headers[f"Bearer {SECRET}"] == server.requests == 24 + 4
    assert server.total_answered == 24 and max(server.answered.values()) == 1
    distilled = list(read_jsonl(res.stages[1].dir / "items.jsonl"))
    for it in distilled:
        letter = answer_letter("teacher", m1_block(it))
        assert it["teacher"]["answer"] == f"The answer is \\boxed{{{letter}}}."
        assert it["teacher"]["reasoning"].startswith("Let me think about this question.")
        assert it["teacher"]["reasoning_source"] == "content"
    done = json.loads((res.stages[1].dir / "_done.json").read_text())
    assert done["report"]["api"]["requests"] == 28 and done["report"]["api"]["retry_timeout"] == 1
    # verify keeps exactly the items the teacher got right
    expected = [it["id"] for it in items if answer_letter("teacher", m1_block(it)) == it["answer_idx"]]
    assert [it["id"] for it in read_jsonl(res.stages[2].dir / "items.jsonl")] == expected
    dropped = list(read_jsonl(res.stages[2].dir / "dropped.jsonl"))
    assert len(dropped) == 24 - len(expected) and all(d["reason"] == "teacher_wrong" for d in dropped)
    # a forced rerun of every stage, even into a new workdir sharing the cache, pays nothing
    before = server.requests
    _run(recipe, tmp_path / "w", force=True)
    recipe2 = {**recipe, "cache": str(tmp_path / "w" / "_cache" / "api.sqlite")}
    _run(recipe2, tmp_path / "w2")
    assert server.requests == before
    # the key is in no file written
    for path in list((tmp_path / "w").rglob("*")) + list((tmp_path / "w2").rglob("*")):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "TEACHER_KEY" in (res.stages[1].dir / "_done.json").read_text()  # only the variable's name


def test_reasoning_content_is_used_when_the_server_sends_it(server, tmp_path, train_items):
    pool = _pool(tmp_path, train_items[:3])
    res = _run(_distill_recipe(pool, server, model="deepseek-r1"), tmp_path / "w")
    for it in read_jsonl(res.stages[1].dir / "items.jsonl"):
        assert it["teacher"]["reasoning_source"] == "reasoning_content"
        assert it["teacher"]["answer"].startswith("The answer is \\boxed{")


def test_failed_items_stay_unfinished_and_a_rerun_retries_only_them(server, tmp_path, train_items):
    pool = _pool(tmp_path, train_items[:6])
    server.faults = {3: "500", 4: "500"}  # item 3 fails for good with max_retries=1
    recipe = _distill_recipe(pool, server, concurrency=1, max_retries=1)
    with pytest.raises(StageError, match="1 item\\(s\\) failed.*huatuo_demo-0002"):
        _run(recipe, tmp_path / "w")
    assert server.total_answered == 5
    _run(recipe, tmp_path / "w")
    assert server.total_answered == 6 and max(server.answered.values()) == 1


def test_secrets_cannot_be_put_in_recipes(server, tmp_path):
    with pytest.raises(StageError, match="unknown parameter.*api_key"):
        _run({"stages": [{"distill": {**_api(server), "api_key": "x"}}]}, tmp_path)
    with pytest.raises(StageError, match="api_key_env"):
        _run({"stages": [{"distill": {**_api(server), "extra_body": {"api_key": "x"}}}]}, tmp_path)


def test_difficulty_drops_items_any_base_model_solves(server, tmp_path, train_items):
    items = train_items[:40]
    pool = _pool(tmp_path, items)
    models = [{"model": "base-7b"}, {"model": "base-32b"}]
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool)}]}},
            {"difficulty": {**_api(server), "model": None, "models": models}},
        ]
    }
    res = _run(recipe, tmp_path / "w")

    def solved(it):
        return [m["model"] for m in models if answer_letter(m["model"], m1_block(it)) == it["answer_idx"]]

    assert [it["id"] for it in read_jsonl(res.stages[1].dir / "items.jsonl")] == [
        it["id"] for it in items if not solved(it)
    ]
    dropped = {d["id"]: d["by"] for d in read_jsonl(res.stages[1].dir / "dropped.jsonl")}
    assert dropped == {it["id"]: solved(it) for it in items if solved(it)}
    assert 0 < len(dropped) < 40
    # annotate instead of drop (for the sampling ablations)
    recipe["stages"][1]["difficulty"]["drop"] = False
    res = _run(recipe, tmp_path / "w")
    out = list(read_jsonl(res.stages[1].dir / "items.jsonl"))
    assert len(out) == 40 and sum(not it["hard"] for it in out) == len(dropped)
    assert set(out[0]["difficulty"]) == {"base-7b", "base-32b"}


def test_domain_classification_and_unclassified_count(server, tmp_path, train_items):
    items = train_items[:60]
    pool = _pool(tmp_path, items)
    res = _run({"stages": [{"collect": {"sources": [{"path": str(pool)}]}}, {"domain": _api(server)}]}, tmp_path / "w")
    out = list(read_jsonl(res.stages[1].dir / "items.jsonl"))
    expected = [domain_reply(m1_block(it)) for it in items]
    expected = [e if e in QUALIFIERS else "unclassified" for e in expected]
    assert [it["domain"] for it in out] == expected
    report = json.loads((res.stages[1].dir / "_done.json").read_text())["report"]
    assert report["unclassified"] == expected.count("unclassified") > 0


# ---------------------------------------------------------------------------------------------------
# crash-resume with a real kill


CHILD = textwrap.dedent(
    """
    import sys
    from m1_harness import plugins
    if "m1_harness.curation.plugin" not in plugins.DEFAULT_PLUGINS:
        plugins.DEFAULT_PLUGINS = plugins.DEFAULT_PLUGINS + ("m1_harness.curation.plugin",)
    from m1_harness.cli import main
    sys.exit(main(["curate", sys.argv[1], "--no-progress"]))
    """
)


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.subprocess
def test_killed_run_resumes_without_paying_any_request_twice(server, tmp_path, train_items, python_env, concurrency):
    import yaml

    items = train_items[:30]
    pool = _pool(tmp_path, items)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "workdir": str(tmp_path / "w"),
                "stages": [
                    {"collect": {"sources": [{"path": str(pool)}]}},
                    {"distill": {**_api(server, timeout=30), "concurrency": concurrency}},
                ],
            }
        )
    )
    K = 11
    server.hang_after = K
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(recipe)],
        env=python_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    progress = tmp_path / "w" / "01_distill" / "_progress.jsonl"

    def settled() -> bool:
        """K answered and checkpointed, and every worker blocked on a request that hangs: the child can do
        nothing more, so the kill lands at the same point on a loaded machine as on an idle one."""
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read().decode())
        text = progress.read_text() if progress.exists() else ""
        return (
            server.total_answered == K
            and server.hanging == concurrency
            and text.endswith("\n")
            and len(text.splitlines()) == K
        )

    wait_for(settled, 60, f"{K} checkpointed items and {concurrency} hanging requests")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert server.total_answered == K
    assert len(progress.read_text().splitlines()) == K
    server.release()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(recipe)],
        env=python_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert server.total_answered == 30 and max(server.answered.values()) == 1
    done = json.loads((tmp_path / "w" / "01_distill" / "_done.json").read_text())
    assert done["resumed_items"] == K and done["counts"]["out"] == 30
    assert "distill" in out.stdout and "output:" in out.stdout


# ---------------------------------------------------------------------------------------------------
# end to end on the 198-item sample


def test_end_to_end_m1k_recipe_on_the_training_sample(server, tmp_path, train_items, eval_data_dir):
    pool = _pool(tmp_path, train_items)
    api = _api(server, concurrency=8)
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool), "source": "huatuo"}]}},
            "dedup",
            {"decontaminate": {"eval_sets": str(eval_data_dir), "limit_per_set": 300}},
            {"difficulty": {**api, "model": None, "models": [{"model": "base-7b"}, {"model": "base-32b"}]}},
            {"distill": {**api, "model": "deepseek-r1"}},
            "verify",
            {"domain": api},
            {"sample": {"n": 25, "seed": 0}},
            "format",
        ]
    }
    res = _run(recipe, tmp_path / "w")
    counts = {s.label: s.counts for s in res.stages}
    assert counts["collect"]["out"] == 198
    for s in res.stages[1:]:
        c = s.counts
        assert c["in"] == c["out"] + c["dropped"] + c["rejected"], s.label
    # predict the difficulty and verify stages from the server's rule
    after_decon = list(read_jsonl(res.stages[2].dir / "items.jsonl"))
    hard = [
        it
        for it in after_decon
        if all(answer_letter(m, m1_block(it)) != it["answer_idx"] for m in ("base-7b", "base-32b"))
    ]
    assert counts["difficulty"]["out"] == len(hard)
    kept = [it for it in hard if answer_letter("deepseek-r1", m1_block(it)) == it["answer_idx"]]
    assert [it["id"] for it in read_jsonl(res.stages[5].dir / "items.jsonl")] == [it["id"] for it in kept]
    sft = list(read_jsonl(res.output))
    assert len(sft) == min(25, len(kept)) > 0
    for rec in sft:
        assert rec["completion"].startswith("<|im_start|>think\nLet me think about this question.")
        assert "\n<|im_start|>answer\nAnswer: The answer is \\boxed{" in rec["completion"]
        assert rec["completion"].endswith("<|im_end|>")
        assert score(rec["completion"], {L: "x" + L for L in "ABCDEFGHIJ"}, "A").letter is not None
    assert server.total_answered == 2 * counts["difficulty"]["in"] + counts["distill"]["in"] + counts["domain"]["in"]
    # rerunning the whole recipe is a no-op
    before = server.requests
    res2 = _run(recipe, tmp_path / "w")
    assert all(s.skipped for s in res2.stages) and server.requests == before


def test_difficulty_with_an_in_process_m1_budget_model_and_an_api_model(
    server, tmp_path, train_items, tiny_model, monkeypatch
):
    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "cache"))
    items = train_items[:3]
    pool = _pool(tmp_path, items)
    models = [
        {
            "name": "tiny",
            "max_tokens": 8,
            "m1_budget": {"pretrained": str(tiny_model), "engine": "hf", "device": "cpu", "dtype": "float32"},
        },
        {"model": "base-7b"},
    ]
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool)}]}},
            {"difficulty": {**_api(server), "model": None, "models": models, "drop": False}},
        ]
    }
    res = _run(recipe, tmp_path / "w")
    out = list(read_jsonl(res.stages[1].dir / "items.jsonl"))
    assert len(out) == 3 and all(set(it["difficulty"]) == {"tiny", "base-7b"} for it in out)
    for it in out:
        expected = answer_letter("base-7b", m1_block(it)) == it["answer_idx"]
        assert it["difficulty"]["base-7b"]["correct"] == expected
        assert it["hard"] == (not any(r["correct"] for r in it["difficulty"].values()))
    api = json.loads((res.stages[1].dir / "_done.json").read_text())["report"]["api"]
    assert api["local_generations"] == 3 and api["requests"] == 3
