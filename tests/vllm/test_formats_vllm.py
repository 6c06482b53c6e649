"""Thinking formats on vLLM: gpt-oss's special-token end marker and openai-harmony's rendering
(tests/thinking/test_formats.py has the other presets)."""

from __future__ import annotations

import pytest
import torch
from families import ANSWER, OPTIONS, family_model

from m1_harness.scoring import score
from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    return {"gpt_oss": family_model(tmp_path_factory.mktemp("families"), "gpt_oss")}


# -- vLLM: special-token end markers stop by id, and the traces are the transformers engine's ---------
def test_vllm_gives_the_transformers_traces_for_harmony(models):
    """gpt-oss ends thinking with the special token <|end|>, which vLLM never matches as a stop string:
    the loop must stop on its id, drop it and splice, exactly as on the transformers engine."""
    pytest.importorskip("vllm", reason="vLLM is not installed (make test runs the vllm tests in .venv-vllm)")
    import os

    from m1tiny import QUESTIONS

    from m1_harness.thinking.engines.hf import HFEngine
    from m1_harness.thinking.engines.vllm import VLLMEngine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    m, path = PRESETS["gpt_oss"], str(models["gpt_oss"])
    vllm = VLLMEngine(path, dtype="float32", enforce_eager=True, max_model_len=512, progress=False)
    try:
        tok = vllm.tokenizer
        prompts = [
            m.template_state(
                tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            )[0]
            for q in QUESTIONS
        ]
        reqs = [BudgetRequest(tok.encode(p, add_special_tokens=False), 40, forcing=2, answer_budget=8) for p in prompts]
        got = BudgetForcer(vllm, m).run(reqs)
    finally:
        vllm.llm.llm_engine.engine_core.shutdown()
    want = BudgetForcer(HFEngine(path, dtype="float32", device="cpu", batch_size=6, progress=False), m).run(reqs)
    assert [(t.thinking_ids, t.answer_ids, t.stop_reasons, t.text) for t in got] == [
        (t.thinking_ids, t.answer_ids, t.stop_reasons, t.text) for t in want
    ]
    end = tok.convert_tokens_to_ids("<|end|>")
    forced = [t for t in got if end in t.stop_reasons]
    assert forced and all(t.forcing_rounds >= 1 and end not in t.thinking_ids for t in forced)


def test_gpt_oss_preset_is_what_openai_harmony_renders():
    """openai-harmony (a vLLM dependency) renders analysis then final exactly as the gpt_oss preset
    writes a trace: think start, thinking, the answer opening, the answer."""
    from openai_harmony import (
        Conversation,
        HarmonyEncodingName,
        Message,
        RenderConversationConfig,
        Role,
        load_harmony_encoding,
    )

    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    conv = Conversation.from_messages(
        [
            Message.from_role_and_content(Role.USER, "Q?"),
            Message.from_role_and_content(Role.ASSISTANT, "Maybe B.").with_channel("analysis"),
            Message.from_role_and_content(Role.ASSISTANT, ANSWER).with_channel("final"),
        ]
    )
    rendered = enc.decode(enc.render_conversation(conv, RenderConversationConfig(auto_drop_analysis=False)))
    m = PRESETS["gpt_oss"]
    prompt = enc.decode(
        enc.render_conversation_for_completion(Conversation.from_messages(conv.messages[:1]), Role.ASSISTANT)
    )
    assert rendered == prompt + m.think_start + "Maybe B." + m.answer_prefix(cut=False) + ANSWER + "<|end|>"
    assert prompt.endswith("<|start|>assistant") and score(rendered, OPTIONS, "A").correct
