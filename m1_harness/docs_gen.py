"""Write docs/model_args.md from ``MODEL_ARGS``, so the page and the table m1_budget checks cannot drift.

    python -m m1_harness.docs_gen          # rewrite docs/model_args.md
    python -m m1_harness.docs_gen --check  # exit 1 (saying so) when the page differs from the table

tests/test_docs.py fails when the page is not what ``render_model_args()`` gives.
"""

from __future__ import annotations

import argparse
import sys

from m1_harness.paths import PACKAGE_DIR, atomic_write_text
from m1_harness.thinking.lm import GEN_ALIASES, HF_ONLY, MODEL_ARGS, SERVER_ONLY, VLLM_ONLY

MODEL_ARGS_PAGE = PACKAGE_DIR.parent / "docs" / "model_args.md"
COMMAND = "python -m m1_harness.docs_gen"

HEADER = f"""# m1_budget model arguments

<!-- Generated from MODEL_ARGS in m1_harness/thinking/lm.py by `{COMMAND}`; do not edit by hand. -->

Pass them as `--model_args key=value,key=value` to `lm_eval --model m1_budget` (or `m1-harness eval`).
An unknown or ill-typed argument is an error that lists this table; an argument that only another
engine reads is ignored with a warning. `--batch_size` comes from lm-eval's own flag. How the budget
loop uses them: [Budget forcing and the trace record](budget_forcing.md); seeds and samples:
[Sampling](sampling.md); engines and servers: [Engines and servers](engines.md); marker presets:
[Thinking formats](thinking_formats.md).

"""


def _engines(name: str) -> str:
    """Which engines read ``name``: the engine-only sets of lm.py, else every engine."""
    used = [e for e, only in (("hf", HF_ONLY), ("vllm", VLLM_ONLY), ("server", SERVER_ONLY)) if name in only]
    return ", ".join(used) or "all"


def _type(kind: object) -> str:
    return (kind if isinstance(kind, str) else kind.__name__).replace("|", " or ")  # type: ignore[attr-defined]


def _default(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_model_args() -> str:
    """The whole page: one row per ``MODEL_ARGS`` entry, then the gen_kwargs aliases."""
    rows = ["| model_arg | type | default | engines | meaning |", "|---|---|---|---|---|"]
    rows += [
        f"| `{name}` | {_type(kind)} | {_default(default)} | {_engines(name)} | {_cell(meaning)} |"
        for name, (kind, default, meaning) in MODEL_ARGS.items()
    ]
    aliases = ["| gen_kwarg | sets |", "|---|---|"]
    aliases += [f"| `{alias}` | `{target}` |" for alias, target in GEN_ALIASES.items()]
    return (
        HEADER + "\n".join(rows) + "\n\n## Per-request gen_kwargs\n\n"
        "These `--gen_kwargs` (s1's names and ours) override the model_args of the same meaning for each "
        "request, so s1 commands work unchanged:\n\n" + "\n".join(aliases) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the page matches MODEL_ARGS")
    args = parser.parse_args(argv)
    text = render_model_args()
    current = MODEL_ARGS_PAGE.read_text(encoding="utf-8") if MODEL_ARGS_PAGE.is_file() else None
    if args.check:
        if current != text:
            print(f"{MODEL_ARGS_PAGE} differs from MODEL_ARGS: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(MODEL_ARGS_PAGE, text)
    print(f"wrote {MODEL_ARGS_PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
