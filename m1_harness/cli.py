"""`m1-harness` / `python -m m1_harness`: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; it is imported
only when its command runs, so `m1-harness --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS = {
    "eval": ("m1_harness.eval_cli", "run lm-eval with m1 tasks and models loaded (same flags as lm_eval)"),
    "plugins": ("m1_harness.plugins_cli", "list installed plugins, their versions and hooks"),
    "sweep": ("m1_harness.analysis.sweep", "evaluate over thinking budgets / forcing rounds through the trace cache"),
    "plot": ("m1_harness.analysis.plots", "accuracy-vs-budget and forcing figures from result folders"),
    "report": ("m1_harness.analysis.report", "paper-style tables (Table 1 layout) from result folders"),
    "explain": (
        "m1_harness.analysis.explain",
        "per-item trajectories, flips, cut-off-aware accuracy and a trace viewer",
    ),
    "curate": ("m1_harness.curation.cli", "run a data-curation recipe (m1K / m23K pipeline)"),
    "train": ("m1_harness.training.cli", "supervised fine-tuning in the m1 thinking format (TRL)"),
    "cache": ("m1_harness.cache_cli", "where the trace cache lives and what it holds (info), or empty it (clear)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m1-harness",
        description="Test-time scaling for medical LLMs (the m1 study) on lm-evaluation-harness.",
        epilog="Evaluate with plain lm_eval: lm_eval --model m1_budget --model_args pretrained=...,thinking_budget=2048 --tasks medqa",
    )
    from m1_harness import __version__

    parser.add_argument("--version", action="version", version=f"m1-harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        parser.parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"m1-harness {name}", description=COMMANDS[name][1])
    from m1_harness.errors import INTERRUPTED_EVAL, Interrupted, UserError, format_user_error

    try:
        if hasattr(module, "main"):  # commands that forward their arguments (eval)
            return module.main(rest)
        module.add_arguments(sub)
        args = sub.parse_args(rest)
        return int(module.run(args) or 0)
    except Interrupted as exc:  # Ctrl-C, with what the command kept
        sys.stderr.write(f"\nm1-harness {name}: {exc}\n")
        return 130
    except UserError as exc:  # a mistake the user can fix: its sentence, not a traceback
        sys.stderr.write(format_user_error(exc, f"m1-harness {name}"))
        return 2
    except KeyboardInterrupt:  # commands that keep work raise Interrupted instead
        kept = INTERRUPTED_EVAL if name == "eval" else "interrupted (Ctrl-C)"
        sys.stderr.write(f"\nm1-harness {name}: {kept}\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
