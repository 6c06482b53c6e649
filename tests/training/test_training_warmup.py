"""Warm-up leaves a step at the set learning rate (issue 25, item 6): ``--max-steps 1`` with the
presets' 5% warm-up trained at learning rate 0 (transformers rounds 5% of 1 step up to 1 warm-up step)."""

from __future__ import annotations

import pytest
from repo_paths import SHARED_TRAIN

from m1_harness.training.config import build_config
from m1_harness.training.sft import sft_config, total_steps, warmup_steps


@pytest.mark.parametrize(
    "ratio, total, expected",
    [
        (0.05, 1, 0),
        (0.05, 2, 1),
        (0.05, 20, 1),
        (0.05, 100, 5),
        (0.05, 101, 6),
        (0.5, 2, 1),
        (1.0, 4, 3),
        (0.0, 9, 0),
    ],
)
def test_warmup_steps_leave_one_step_at_the_set_rate(ratio, total, expected):
    assert warmup_steps(ratio, total) == expected


def test_total_steps_count_updates_as_transformers_does():
    cfg = build_config("m1-7b-1k", {"output_dir": "x", "per_device_batch_size": 4})  # 5 epochs, global 16
    assert total_steps(cfg, 1000, world_size=1, accumulation=4) == 5 * 63  # 250 batches -> 63 updates
    assert total_steps(cfg, 3, world_size=1, accumulation=4) == 5
    cfg.max_steps = 1
    assert total_steps(cfg, 1000, world_size=1, accumulation=4) == 1


def test_sft_config_turns_the_ratio_into_whole_steps(tmp_path):
    cfg = build_config("m1-7b-1k", {"output_dir": str(tmp_path), "bf16": False, "max_steps": 1})
    assert sft_config(cfg).warmup_steps == 0
    cfg.max_steps = -1
    assert sft_config(cfg, n_examples=1000).warmup_steps == 16  # 5 x ceil(1000 / 16) = 315 updates: 5% is 16
    assert sft_config(cfg).warmup_steps == 0.05  # length unknown: the ratio, as before


def test_a_one_step_run_with_warmup_changes_the_weights(tmp_path):
    import torch

    from m1_harness.devmodels import tiny_qwen2
    from m1_harness.training.sft import build_trainer

    data = SHARED_TRAIN
    if not data.exists():
        pytest.fail(f"training sample not found at {data}: set M1_HARNESS_TRAIN_DATA")
    model = tiny_qwen2(tmp_path / "tiny")
    cfg = build_config(
        "m1-7b-1k",
        dict(
            model=str(model),
            data=str(data),
            output_dir=str(tmp_path / "run"),
            bf16=False,
            gradient_checkpointing=False,
            max_length=256,
            limit=4,
            per_device_batch_size=4,
            global_batch_size=4,
            max_steps=1,
            learning_rate=1e-2,
            save_strategy="no",
            seed=0,
            logging_steps=1,
        ),
    )
    assert (cfg.warmup_ratio, cfg.lr_scheduler) == (0.05, "cosine")  # the preset's, as --max-steps 1 keeps them
    trainer, _ = build_trainer(cfg)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    changed = [k for k, v in trainer.model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert trainer.state.global_step == 1 and len(changed) == len(before)
