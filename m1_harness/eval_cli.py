"""`m1-harness eval ...`: lm-eval's own command line with m1 tasks and models loaded explicitly.

The explicit route for environments where the autoload .pth is off (M1_HARNESS_AUTOLOAD=0) or
not installed (e.g. a PYTHONPATH checkout): every lm_eval flag works unchanged.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from m1_harness import _autoload

    _autoload.register_model()
    _autoload.install_excepthook()
    import lm_eval.config.evaluate_config as evaluate_config
    import lm_eval.evaluator as evaluator
    import lm_eval.tasks.manager as manager

    _autoload.patch_task_manager(manager)
    _autoload.patch_evaluator(evaluator)
    _autoload.patch_evaluate_config(evaluate_config)
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    result = cli_evaluate()
    return int(result or 0) if isinstance(result, int) else 0
