"""``m1-harness train``: supervised fine-tuning in the m1 thinking format.

    m1-harness train --preset m1-7b-1k --data UCSC-VLAA/m1k-tokenized --output runs/m1-7b-1k
    accelerate launch --config_file "$(m1-harness train --accelerate-config fsdp)" \\
        -m m1_harness.training.cli --preset m1-7b-1k --data ... --output ...

Options come from the preset (``train/presets/<name>.yaml``), then ``--set key=value``, then the
explicit flags. ``python -m m1_harness.training.cli`` takes the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from m1_harness.training.config import (
    FORMAT_CHOICES,
    OVERLONG_CHOICES,
    REPORT_CHOICES,
    ConfigError,
    accelerate_config,
    build_config,
    parse_set,
    preset_names,
)

# flag dest -> TrainConfig field
_FLAGS = {
    "data": "data",
    "output": "output_dir",
    "model": "model",
    "trainer": "trainer",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "global_batch_size": "global_batch_size",
    "per_device_batch_size": "per_device_batch_size",
    "max_length": "max_length",
    "overlong": "overlong",
    "lora": "lora",
    "report_to": "report_to",
    "resume": "resume",
    "seed": "seed",
    "limit": "limit",
    "data_format": "data_format",
    "split": "data_split",
    "bf16": "bf16",
    "save_steps": "save_steps",
    "logging_steps": "logging_steps",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (parser.description or "") + (
        " Options: preset, then --set key=value, then the explicit flags below."
    )
    parser.add_argument(
        "--preset",
        default="m1-7b-1k",
        help="preset name or YAML file (default m1-7b-1k; shipped: {})".format(", ".join(preset_names())),
    )
    parser.add_argument("--data", help="a .jsonl/.json file, a folder, or a Hub dataset id (UCSC-VLAA/m1k-tokenized)")
    parser.add_argument("--output", help="output directory (checkpoints, final model, m1_train_summary.json)")
    parser.add_argument("--model", help="base model (Hub id or local folder)")
    parser.add_argument("--trainer", help="registered trainer name (default sft)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any preset option (repeatable); sft.KEY=VALUE goes to trl.SFTConfig as is",
    )
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    parser.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float)
    parser.add_argument("--global-batch-size", type=int, help="per-device batch x gradient accumulation x world size")
    parser.add_argument("--per-device-batch-size", type=int)
    parser.add_argument("--max-length", type=int, help="tokens per sequence (prompt + completion)")
    parser.add_argument(
        "--overlong",
        choices=OVERLONG_CHOICES,
        help="sequences over --max-length: drop them or truncate them (default truncate)",
    )
    parser.add_argument(
        "--lora", action="store_true", default=None, help="train LoRA adapters (peft) instead of all weights"
    )
    parser.add_argument("--report-to", choices=REPORT_CHOICES, help="experiment tracking (default none)")
    parser.add_argument(
        "--resume", action="store_true", default=None, help="continue from the last checkpoint in --output"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an --output that holds an earlier run (its checkpoints are deleted)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--limit", type=int, help="use the first N records only")
    parser.add_argument("--format", dest="data_format", choices=FORMAT_CHOICES, help="data layout (default auto)")
    parser.add_argument("--split", help="dataset split for Hub / folder datasets (default train)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--save-steps", type=int)
    parser.add_argument("--logging-steps", type=int)
    parser.add_argument("--show-config", action="store_true", help="print the resolved options as JSON and exit")
    parser.add_argument(
        "--accelerate-config",
        metavar="NAME",
        help="print the path of a shipped accelerate config (fsdp, deepspeed_zero3) and exit",
    )


def resolve(args: argparse.Namespace):
    overrides = parse_set(args.set)
    for dest, key in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    return build_config(args.preset, overrides)


from m1_harness.training.sft import SUMMARY_FILE  # noqa: E402  (light: no torch or TRL at import)


def _check_earlier_run(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start at step 0 over an earlier run's checkpoints (they used to be overwritten silently)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the earlier run, or start again")
    checkpoints = sorted(
        (d for d in out.glob("checkpoint-*") if d.is_dir() and d.name[11:].isdigit()), key=lambda d: int(d.name[11:])
    )
    if resume or not (checkpoints or (out / SUMMARY_FILE).is_file()):
        return
    if not overwrite:
        held = f"checkpoints up to {checkpoints[-1].name}" if checkpoints else f"a finished run ({SUMMARY_FILE})"
        raise ConfigError(
            f"--output {str(out)!r} already holds {held}: pass --resume to continue from its last "
            "checkpoint, --overwrite to start again (its checkpoints are deleted), or another --output"
        )
    if _is_main_process():
        import shutil

        for d in checkpoints:
            shutil.rmtree(d)
        (out / SUMMARY_FILE).unlink(missing_ok=True)
        print(f"m1-harness train: --overwrite: deleted {len(checkpoints)} checkpoint(s) of the earlier run in {out}")


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def run(args: argparse.Namespace) -> int:
    try:
        if args.accelerate_config:
            print(accelerate_config(args.accelerate_config))
            return 0
        cfg = resolve(args)
        if args.show_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        cfg.validate()
        if not cfg.data:
            raise ConfigError("no training data: pass --data PATH_OR_HUB_ID")
        _check_earlier_run(Path(cfg.output_dir), bool(cfg.resume), args.overwrite)
    except ConfigError as exc:
        print(f"m1-harness train: {exc}", file=sys.stderr)
        return 2

    from m1_harness import plugins
    from m1_harness.training.data import DataError

    registry = plugins.trainers()
    trainer = registry.get(cfg.trainer)
    if trainer is None:
        print(
            f"m1-harness train: unknown trainer {cfg.trainer!r}; registered: {', '.join(sorted(registry)) or 'none'}",
            file=sys.stderr,
        )
        return 2
    try:
        out = trainer(cfg)
    except (DataError, ConfigError) as exc:
        print(f"m1-harness train: {exc}", file=sys.stderr)
        return 2
    if _is_main_process():
        summary_path = out / SUMMARY_FILE if out is not None else None
        print(f"m1-harness train: model saved in {out}")
        if summary_path is not None and summary_path.is_file():
            s = json.loads(summary_path.read_text())
            d = s.get("data", {})
            print(
                f"m1-harness train: {d.get('records')} records ({d.get('data_format')}), {d.get('overlong')} over "
                f"max_length {d.get('max_length')} ({d.get('overlong_policy')}), {s.get('global_step')} steps, "
                f"loss {s.get('first_loss')} -> {s.get('last_loss')}"
            )
    return 0


def cli_main(argv: list[str] | None = None) -> int:
    """``python -m m1_harness.training.cli`` / ``accelerate launch -m m1_harness.training.cli``."""
    parser = argparse.ArgumentParser(prog="m1_harness.training.cli", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli_main())
