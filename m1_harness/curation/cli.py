"""``m1-harness curate RECIPE.yaml``: run (or resume) a data-curation recipe.

Rerunning the same command skips finished stages and finished items; ``--from LABEL`` redoes a
stage and everything after it; ``--list`` shows the registered stages and their parameters.
"""

from __future__ import annotations

import json
import sys

INTERRUPTED = (
    "interrupted (Ctrl-C): finished stages and every finished item of the interrupted stage are kept "
    "(its _progress.jsonl); rerun the same command to resume"
)


def add_arguments(parser) -> None:
    parser.add_argument("recipe", nargs="?", help="recipe YAML (stages, params, workdir)")
    parser.add_argument("--workdir", help="override the recipe's workdir")
    parser.add_argument("--from", dest="from_stage", metavar="LABEL", help="redo this stage and the ones after it")
    parser.add_argument("--until", metavar="LABEL", help="stop after this stage")
    parser.add_argument(
        "--force", action="store_true", help="redo every stage (API responses still come from the cache)"
    )
    parser.add_argument("--list", action="store_true", help="list registered stages and their parameters")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--summary-json", metavar="FILE", help="write per-stage counts as JSON")


def run(args) -> int:
    from m1_harness import plugins
    from m1_harness.curation import StageError, run_recipe

    try:
        registry = plugins.stages()
    except plugins.PluginError as exc:
        print(f"m1-harness curate: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for name, stage in sorted(registry.items()):
            desc = getattr(stage, "description", "") or ""
            print(f"{name}: {desc}")
            for k, v in sorted(getattr(stage, "defaults", {}).items()):
                print(f"    {k}: {json.dumps(v)}")
        return 0
    if not args.recipe:
        print("m1-harness curate: give a recipe YAML (or --list)", file=sys.stderr)
        return 2
    try:
        result = run_recipe(
            args.recipe,
            workdir=args.workdir,
            force=args.force,
            from_stage=args.from_stage,
            until=args.until,
            registry=registry,
            show_progress=False if args.no_progress else None,
        )
    except (StageError, FileNotFoundError) as exc:
        print(f"m1-harness curate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the stage's worker threads are daemons: nothing waits on a request in flight
        print(f"\nm1-harness curate: {INTERRUPTED}", file=sys.stderr)
        return 130
    rows = [
        {
            "label": s.label,
            "stage": s.stage,
            "dir": str(s.dir),
            "skipped": s.skipped,
            **s.counts,
            "seconds": round(s.seconds, 2),
        }
        for s in result.stages
    ]
    for r in rows:
        flag = " (finished before)" if r["skipped"] else ""
        print(
            f"{r['label']:>16}: in {r['in']:>7}  out {r['out']:>7}  dropped {r['dropped']:>7}  rejected {r['rejected']:>5}{flag}"
        )
    print(f"output: {result.output}")
    if args.summary_json:
        with open(args.summary_json, "w") as fh:
            json.dump({"workdir": str(result.workdir), "output": str(result.output), "stages": rows}, fh, indent=2)
    return 0
