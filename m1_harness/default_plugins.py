"""The built-in tasks and the m1_budget model, registered through the hooks third-party plugins use."""

from m1_harness import hookimpl
from m1_harness.paths import shipped_dir


@hookimpl
def m1_register_tasks(register):
    register(shipped_dir("tasks"))


@hookimpl
def m1_register_models(register):
    register("m1_budget", "m1_harness.thinking.lm:M1BudgetLM")
