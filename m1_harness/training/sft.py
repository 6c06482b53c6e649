"""The ``sft`` trainer: TRL ``SFTTrainer`` on m1 prompt / completion pairs, loss on the completion only.

Runs the same way on one CPU, one GPU, or many under ``accelerate launch`` (FSDP / DeepSpeed from
the shipped configs): the global batch is kept at ``global_batch_size`` by computing gradient
accumulation from the per-device batch and the world size.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

from m1_harness.training import data as data_mod
from m1_harness.training.config import TrainConfig

log = logging.getLogger("m1_harness.training")
SUMMARY_FILE = "m1_train_summary.json"


def last_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


def warmup_steps(ratio: float, total_steps: int) -> int:
    """Warm-up steps of a run of ``total_steps`` optimiser steps: ``ceil(ratio x total)``, as transformers
    rounds a ratio, but leaving at least one step after the warm-up. A linear warm-up's first step is at
    rate 0, so a 1-step run with 5% warm-up trained at learning rate 0; now it trains at the set rate."""
    if ratio <= 0 or total_steps <= 1:
        return 0
    return min(math.ceil(ratio * total_steps), total_steps - 1)


def total_steps(cfg: TrainConfig, n_examples: int, world_size: int, accumulation: int) -> int:
    """Optimiser steps of the run: ``max_steps``, else epochs x updates per epoch as transformers counts
    them (each process's batches, ``ceil`` over the accumulation)."""
    if int(cfg.max_steps) > 0:
        return int(cfg.max_steps)
    batches = math.ceil(math.ceil(n_examples / max(1, world_size)) / int(cfg.per_device_batch_size))
    return math.ceil(float(cfg.epochs) * max(1, math.ceil(batches / max(1, accumulation))))


def sft_config(cfg: TrainConfig, n_examples: int | None = None):
    """The ``trl.SFTConfig`` for ``cfg`` (public so tests and users can inspect the mapping).

    ``n_examples`` (the training pairs) or ``max_steps`` fixes the run's length, and the warm-up ratio
    becomes whole steps (``warmup_steps``); otherwise the ratio is passed on as transformers takes it."""
    from trl import SFTConfig

    kwargs = dict(
        output_dir=cfg.output_dir,
        num_train_epochs=float(cfg.epochs),
        max_steps=int(cfg.max_steps),
        per_device_train_batch_size=int(cfg.per_device_batch_size),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps(),
        learning_rate=float(cfg.learning_rate),
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=float(cfg.warmup_ratio) if cfg.warmup_ratio else 0,  # a float < 1 is a ratio
        weight_decay=float(cfg.weight_decay),
        adam_beta1=float(cfg.adam_beta1),
        adam_beta2=float(cfg.adam_beta2),
        max_grad_norm=float(cfg.max_grad_norm),
        bf16=bool(cfg.bf16),
        seed=int(cfg.seed),
        data_seed=int(cfg.seed),
        max_length=int(cfg.max_length),  # explicit: TRL's default (1024) would cut m1 traces
        truncation_mode="keep_start",
        completion_only_loss=True,
        packing=False,
        logging_steps=int(cfg.logging_steps),
        logging_first_step=True,
        save_strategy=cfg.save_strategy,
        save_steps=int(cfg.save_steps),
        save_total_limit=cfg.save_total_limit,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        dataset_num_proc=cfg.dataset_num_proc,
        model_init_kwargs={"dtype": cfg.model_dtype},
        include_num_input_tokens_seen="non_padding",
    )
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    ckpt_key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    kwargs[ckpt_key] = bool(cfg.gradient_checkpointing)
    kwargs.update(cfg.extra or {})
    args = SFTConfig(**kwargs)
    if "gradient_accumulation_steps" not in (cfg.extra or {}):
        # the processes that really take part (WORLD_SIZE can disagree, e.g. torchrun on CPU without DDP)
        args.gradient_accumulation_steps = cfg.gradient_accumulation_steps(args.world_size)
    if "warmup_steps" not in (cfg.extra or {}) and (n_examples is not None or int(cfg.max_steps) > 0):
        total = total_steps(cfg, n_examples or 0, args.world_size, args.gradient_accumulation_steps)
        args.warmup_steps = warmup_steps(float(cfg.warmup_ratio or 0), total)
    return args


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    return LoraConfig(
        r=int(cfg.lora_r),
        lora_alpha=int(cfg.lora_alpha),
        lora_dropout=float(cfg.lora_dropout),
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def build_trainer(cfg: TrainConfig, callbacks=None):
    """Tokenizer, data and an ``SFTTrainer``, not yet trained; returns ``(trainer, stats)``."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    cfg.validate()
    checked = data_mod.load_and_check(cfg)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    pairs, stats = data_mod.prepare(cfg, tokenizer, checked)
    log.warning("m1-harness train: %s", stats.report())
    args = sft_config(cfg, n_examples=len(pairs))
    trainer = SFTTrainer(
        model=cfg.model,
        args=args,
        train_dataset=datasets.Dataset.from_list(pairs),
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.lora else None,
        callbacks=list(callbacks or []),
    )
    return trainer, stats


def train(cfg: TrainConfig, callbacks=None) -> Path:
    """Fine-tune ``cfg.model`` on ``cfg.data`` into ``cfg.output_dir``; return the output directory.

    The final model (merged, for LoRA) and its tokenizer are saved at the top of the output
    directory, so it loads with ``from_pretrained`` and evaluates with ``lm_eval --model m1_budget``.
    """
    trainer, stats = build_trainer(cfg, callbacks)
    out = Path(cfg.output_dir)
    resume_from = None
    if cfg.resume:
        resume_from = last_checkpoint(out)
        if resume_from:
            log.warning("m1-harness train: resuming from %s", resume_from)
        else:
            log.warning("m1-harness train: --resume: no checkpoint in %s, starting from the beginning", out)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - start
    _save_final(trainer, cfg, out)
    if trainer.accelerator.is_main_process:
        state = trainer.state
        losses = [e["loss"] for e in state.log_history if "loss" in e]
        summary = {
            "config": cfg.to_dict(),
            "data": stats.to_dict(),
            "resumed_from": resume_from,
            "global_step": state.global_step,
            "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
            "world_size": trainer.args.world_size,
            "train_runtime_s": round(wall, 3),
            "tokens_seen": int(getattr(state, "num_input_tokens_seen", 0) or 0),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "metrics": result.metrics,
        }
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    return out


def _save_final(trainer, cfg: TrainConfig, out: Path) -> None:
    if not cfg.lora:
        trainer.save_model(str(out))  # weights + tokenizer (processing_class)
        return
    # LoRA: keep the adapter, and write the merged model at the top so eval needs no peft
    trainer.save_model(str(out / "adapter"))
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out))
        trainer.processing_class.save_pretrained(str(out))
