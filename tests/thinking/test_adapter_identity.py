"""A LoRA adapter folder given as ``pretrained`` keys the trace cache by its base model's weights too:
transformers loads the base under the adapter, so a base checkpoint saved over in place gives other
tokens (on main the identity stayed the same and the run was answered from the old traces)."""

import torch
from transformers import AutoModelForCausalLM

from m1_harness.devmodels import tiny_qwen2
from m1_harness.thinking.engines.base import weights_identity


def test_an_adapter_identity_changes_with_its_base_weights(tmp_path):
    import peft  # a dev dependency of the main environment; the vLLM one (which deselects this file) has none

    base = tiny_qwen2(tmp_path / "base")
    adapter = tmp_path / "lora"
    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), peft.LoraConfig(r=2, target_modules=["q_proj"])
    )
    model.save_pretrained(adapter)
    before = weights_identity("hf", str(adapter), "float32")
    assert before == weights_identity("hf", str(adapter), "float32")  # stable while nothing changes

    retrained = AutoModelForCausalLM.from_pretrained(base)  # the base checkpoint saved over in place
    with torch.no_grad():
        for p in retrained.parameters():
            p.mul_(-3.0)
    retrained.save_pretrained(base)
    assert weights_identity("hf", str(adapter), "float32") != before


def test_an_adapter_on_a_hub_base_of_unknown_commit_has_no_identity(tmp_path):
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "nobody/not-in-the-cache"}')
    assert weights_identity("hf", str(adapter), "float32") is None  # the cache is then off (lm.py says so)
