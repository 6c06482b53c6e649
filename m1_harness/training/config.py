"""Training options: the presets in ``train/presets/*.yaml`` and the command-line overrides on top.

Stdlib and pyyaml only, so ``m1-harness train --help`` and the plugin registry stay cheap.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from m1_harness.errors import UserError
from m1_harness.paths import shipped_dir

DATA_ENV = "M1_HARNESS_TRAIN_DATA"
OVERLONG_CHOICES = ("drop", "truncate")
REPORT_CHOICES = ("none", "wandb", "tensorboard")
FORMAT_CHOICES = ("auto", "sft_sample", "m1_hub", "prompt_completion")


class ConfigError(UserError, ValueError):
    """Bad training options: unknown preset or key, a value of the wrong type, an impossible batch."""


@dataclass
class TrainConfig:
    """Everything one SFT run needs. Field names are the preset keys and the ``--set`` keys."""

    # what
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    data: str = "UCSC-VLAA/m1k-tokenized"
    output_dir: str = ""
    data_split: str = "train"
    data_format: str = "auto"  # auto | sft_sample | m1_hub | prompt_completion
    limit: int | None = None  # first N records only (smoke runs)
    markers: str = "m1"  # m1_harness.thinking.markers preset used to build the completion
    # optimisation (the m1 release: 5 epochs, global batch 16, lr 1e-5, 5% warm-up, cosine)
    epochs: float = 5.0
    max_steps: int = -1  # > 0 overrides epochs
    global_batch_size: int = 16
    per_device_batch_size: int = 1
    learning_rate: float = 1e-5
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    weight_decay: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    bf16: bool = True
    model_dtype: str = "float32"  # dtype the weights are loaded in; bf16 above is autocast
    gradient_checkpointing: bool = True
    seed: int = 42
    # sequences
    max_length: int = 16384
    overlong: str = "truncate"  # drop | truncate
    # LoRA (peft)
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or a comma-separated list of module names
    # bookkeeping
    logging_steps: int = 1
    save_strategy: str = "epoch"  # epoch | steps | no
    save_steps: int = 500
    save_total_limit: int | None = None
    report_to: str = "none"  # none | wandb | tensorboard
    resume: bool = False
    dataset_num_proc: int | None = None
    trainer: str = "sft"
    preset: str | None = None
    extra: dict = field(default_factory=dict)  # passed to trl.SFTConfig as is (--set sft.<key>=value)

    def validate(self) -> TrainConfig:
        if not self.output_dir:
            raise ConfigError("no output directory: pass --output DIR")
        if self.overlong not in OVERLONG_CHOICES:
            raise ConfigError(f"overlong must be one of {', '.join(OVERLONG_CHOICES)}, got {self.overlong!r}")
        if self.report_to not in REPORT_CHOICES:
            raise ConfigError(f"report_to must be one of {', '.join(REPORT_CHOICES)}, got {self.report_to!r}")
        if self.data_format not in FORMAT_CHOICES:
            raise ConfigError(f"data_format must be one of {', '.join(FORMAT_CHOICES)}, got {self.data_format!r}")
        if self.max_length is None or int(self.max_length) <= 0:
            raise ConfigError(f"max_length must be a positive number of tokens, got {self.max_length!r}")
        for name in ("global_batch_size", "per_device_batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        self.gradient_accumulation_steps()
        return self

    def world_size(self) -> int:
        """Processes taking part (``WORLD_SIZE`` from accelerate / torchrun; 1 otherwise)."""
        return int(os.environ.get("WORLD_SIZE", "1"))

    def gradient_accumulation_steps(self, world_size: int | None = None) -> int:
        """global batch = per-device batch x accumulation x world size, solved for accumulation."""
        world = self.world_size() if world_size is None else world_size
        per_step = int(self.per_device_batch_size) * world
        if int(self.global_batch_size) % per_step:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size} x world size {world} = {per_step}"
            )
        return int(self.global_batch_size) // per_step

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def preset_dir() -> Path:
    return shipped_dir("train") / "presets"


def accelerate_config(name: str) -> Path:
    """Path of a shipped accelerate config: ``fsdp`` or ``deepspeed_zero3``."""
    path = shipped_dir("train") / "accelerate" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (shipped_dir("train") / "accelerate").glob("*.yaml"))
        raise ConfigError(f"no accelerate config {name!r}; shipped: {', '.join(known)}")
    return path


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def load_preset(name_or_path: str) -> dict:
    """A preset by name (``m1-7b-1k``) or a YAML file path; unknown keys are an error."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = preset_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {name_or_path!r}; shipped presets: {', '.join(preset_names())}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a preset is a mapping of option: value")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
    return values


def _coerce(key: str, raw):
    """Turn a ``--set`` string into the field's type (YAML scalars: 1e-5, true, null, 16)."""
    import yaml

    value = yaml.safe_load(raw) if isinstance(raw, str) else raw
    if value is None:
        return None
    default = FIELDS[key].default
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, float):
            return float(value)
        if isinstance(default, int) or key in ("limit", "save_total_limit", "dataset_num_proc"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, str) or key == "preset":
            return str(raw) if isinstance(raw, str) else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {key}: cannot use {raw!r} (expected {type(default).__name__})") from None
    return value


def parse_set(items: list[str]) -> dict:
    """``["lr_scheduler=linear", "sft.packing=true"]`` -> overrides; ``sft.`` keys go to ``extra``."""
    import yaml

    out: dict = {}
    extra: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key.startswith("sft."):
            extra[key[4:]] = yaml.safe_load(raw)
            continue
        if key not in FIELDS or key == "extra":
            raise ConfigError(
                f"--set: unknown option {key!r}; known: {', '.join(sorted(k for k in FIELDS if k != 'extra'))}"
            )
        out[key] = _coerce(key, raw)
    if extra:
        out["extra"] = extra
    return out


def build_config(preset: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """Preset values, then overrides (``None`` values in overrides mean "not given")."""
    values: dict = {}
    if preset:
        values.update({k: _coerce(k, v) for k, v in load_preset(preset).items()})
        values["preset"] = preset
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in FIELDS:
            raise ConfigError(f"unknown option {key!r}")
        if key == "extra":
            values.setdefault("extra", {}).update(value)
        else:
            values[key] = value
    return TrainConfig(**values)
