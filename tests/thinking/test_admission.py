"""Admission reads what the engine says its KV cache holds (issue 26 item 3): vLLM's
``kv_cache_size_tokens`` where the build has it (hybrid and sliding-window models), blocks x block
size otherwise; the arithmetic at the block sizes vLLM uses (16 on CUDA, 32 here on CPU, 128 for
head-dim-256 models on FlashAttention 4); and the driver unchanged when the engine runs one step
ahead of ``step()`` (CUDA's async scheduling). On the scripted engine: one id per character."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.scripted import Script, StreamingScriptedEngine
from m1_harness.thinking.engines.vllm import kv_cache_tokens
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest, RequestLoop
from m1_harness.thinking.scheduler import Admission

M1 = PRESETS["m1"]
END = "<|im_end|>"
WORST = 8 + 40 + 22 + 8  # prompt "A" + think marker, the whole budget, the cut answer marker, the answer


def _engine(kv_tokens: int, block: int, cls=StreamingScriptedEngine):
    return cls({"A": Script(["a" * 4 + END], "ok" + END)}, kv_cache_tokens=kv_tokens, block_size=block)


def _request(eng):
    return BudgetRequest(eng.tokenizer.encode("A"), thinking_budget=40, answer_budget=8)


def test_kv_cache_size_tokens_wins_over_blocks_times_block_size():
    # vLLM 0.33 (config/cache.py): "num_gpu_blocks * block_size can be wrong for hybrid models where
    # requests occupy multiple KV cache groups"; builds without the field: blocks x block size
    hybrid = SimpleNamespace(kv_cache_size_tokens=12_288, num_gpu_blocks=1_000, block_size=16)
    assert kv_cache_tokens(hybrid) == 12_288
    assert kv_cache_tokens(SimpleNamespace(num_gpu_blocks=1_000, block_size=32)) == 32_000
    assert kv_cache_tokens(SimpleNamespace(kv_cache_size_tokens=None, num_gpu_blocks=None, block_size=16)) == 0


@pytest.mark.parametrize("block, need", [(16, 5 + 1), (32, 3 + 1), (128, 1 + 1)])
def test_admission_at_the_block_sizes_vllm_uses(block, need):
    """A request's worst case, 78 ids, is ceil(78 / block) blocks + 1 for a finished round's partial
    block; a KV cache of two worst cases admits two requests, then a third only once the first has
    shown how little it thinks."""
    eng = _engine(2 * need * block, block)
    forcer = BudgetForcer(eng, M1)
    adm = Admission(forcer, capacity_blocks=2 * need, block=block, n_probes=0, answer_budget=8)
    assert adm.request_blocks(RequestLoop(forcer, _request(eng)), 0, probes_due=False) == need
    assert -(-WORST // block) + 1 == need
    traces = forcer.run([_request(eng)] * 4)
    assert eng.log[:3] == [("submit", 0), ("submit", 1), ("done", 0)]
    assert all(t.text == "<|im_start|>think\naaaa\n<|im_start|>answer\nok" for t in traces)


def test_a_hybrid_capacity_bounds_admission_by_what_vllm_says_it_holds():
    """The same blocks, but vLLM says the cache holds one worst case (a hybrid model's requests take
    blocks in several groups): one request at a time until the estimate learns it thinks 4 ids."""
    config = SimpleNamespace(kv_cache_size_tokens=(5 + 1) * 16 + 8, num_gpu_blocks=12, block_size=16)
    eng = _engine(kv_cache_tokens(config), config.block_size)
    traces = BudgetForcer(eng, M1).run([_request(eng)] * 3)
    assert eng.log[:2] == [("submit", 0), ("done", 0)]  # blocks x size (192 tokens) would have admitted two
    assert all(t.answer_ids == eng.tokenizer.encode("ok" + END) for t in traces)


class RunAhead(StreamingScriptedEngine):
    """CUDA's async scheduling: the engine schedules step n+1 before step n's outputs come back, so a
    request's result arrives one ``poll`` after it finished (and the engine ran one step further)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.held: list = []

    def poll(self):
        finished = super().poll() if self.queue else []
        out, self.held = self.held, finished
        return out

    def cancel(self) -> None:
        super().cancel()
        self.held = []


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_the_driver_gives_the_same_traces_when_the_engine_runs_ahead_of_step(async_scheduling):
    block, need = 16, 6
    eng = _engine(2 * need * block, block, RunAhead if async_scheduling else StreamingScriptedEngine)
    reqs = [_request(eng)] * 5
    traces = BudgetForcer(eng, M1).run(reqs)
    assert [t.text for t in traces] == ["<|im_start|>think\naaaa\n<|im_start|>answer\nok"] * 5
    assert [len(t.thinking_ids) for t in traces] == [4] * 5
    assert eng.peak <= 3  # two worst cases, or three once the estimate has learnt: never more
