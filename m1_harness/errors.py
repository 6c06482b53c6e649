"""The one base class for mistakes a user can fix (a bad argument, file, path or setting).

Why one class: every entry point (``m1-harness ...``, and ``lm_eval`` through the start-up hook)
prints such an error as its message alone, a sentence that names the argument, file or line and
says what to do, instead of a traceback from deep inside a library. Stdlib only: imported at start-up.
"""


class UserError(Exception):
    """A mistake in what the user asked for; the message names it and says what to do."""


def format_user_error(exc: BaseException, prog: str) -> str:
    return f"{prog}: error: {exc}\n"
