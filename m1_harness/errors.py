"""The one base class for mistakes a user can fix (a bad argument, file, path or setting).

Why one class: every entry point (``m1-harness ...``, and ``lm_eval`` through the start-up hook)
prints such an error as its message alone, a sentence that names the argument, file or line and
says what to do, instead of a traceback from deep inside a library. Stdlib only: imported at start-up.
"""


class UserError(Exception):
    """A mistake in what the user asked for; the message names it and says what to do."""


def format_user_error(exc: BaseException, prog: str) -> str:
    return f"{prog}: error: {exc}\n"


# What Ctrl-C during an evaluation leaves: said in one line instead of a KeyboardInterrupt traceback.
INTERRUPTED_EVAL = (
    "interrupted (Ctrl-C): lm-eval writes its results only when a run ends, so this run wrote none; "
    "m1_budget keeps every request it finished in its trace cache (unless cache=off), so the same "
    "command resumes from them"
)


class Interrupted(UserError):
    """Ctrl-C, re-raised by a command with one sentence saying what it kept."""
