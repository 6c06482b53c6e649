"""A tiny Qwen2 that talks: devmodels.tiny_qwen2 with its weights shaken (fixed seed).

The freshly initialised tiny model writes one token forever; tests of stopping, forcing and caching
need varied output that ends its thinking after a few dozen tokens now and then, so the weights get
seeded noise and the ``<|im_start|>``/``<|im_end|>`` embeddings are scaled up (tied to the head).
"""

from pathlib import Path

from m1_harness.devmodels import tiny_qwen2


def chatty_tiny_qwen2(directory: Path) -> Path:
    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_qwen2(directory.with_name(directory.name + "-base"))
    model = AutoModelForCausalLM.from_pretrained(base)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
        model.get_input_embeddings().weight[1:3] *= 1.5
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    (directory / "generation_config.json").write_text((base / "generation_config.json").read_text())
    return directory


QUESTIONS = [
    "The patient presents with fever",
    "Which of the following is the most likely diagnosis?",
    "Wait, let me think",
    "sepsis",
    "A. Pneumonia B. Asthma",
    "hypertension and renal failure",
]
