"""Start-up hook (imported by ``m1_harness_autoload.pth``): lets plain ``lm_eval`` see m1-harness.

lm-eval 0.4.13 has no entry points for models or tasks. This module only installs a meta-path
finder (stdlib, microseconds); nothing else happens unless lm-eval itself is imported. Then:
- after ``lm_eval.api.registry`` loads, lm-eval's own models are registered first (so they do
  not vanish from the registry), then ``m1_budget`` and plugin models (``m1_register_models``)
  as lazy placeholders;
- after ``lm_eval.tasks.manager`` loads, every ``TaskManager`` also indexes the task folders
  that plugins register (``m1_register_tasks``);
- after ``lm_eval.evaluator`` / ``lm_eval.config.evaluate_config`` load, ``simple_evaluate`` and the
  CLI's task matching check the run's arguments and data before the model loads (preflight.py).
In a Python started by an engine that ties its children to its life, it also sets the parent-death
signal (lifetime.py), whatever ``M1_HARNESS_AUTOLOAD`` says. Set ``M1_HARNESS_AUTOLOAD=0`` to switch the rest off; ``python -m m1_harness eval`` works either way.
Errors here never break the interpreter: they are reported once on stderr.
"""

import os
import sys

ENV = "M1_HARNESS_AUTOLOAD"
_TARGETS = ("lm_eval.api.registry", "lm_eval.tasks.manager", "lm_eval.evaluator", "lm_eval.config.evaluate_config")


def _warn(exc):
    sys.stderr.write(f"m1-harness: autoload hook failed ({type(exc).__name__}: {exc}); set {ENV}=0 to silence\n")


def register_model():
    """Register lm-eval's built-in models, then ours and the plugins' as lazy placeholders."""
    import lm_eval.models  # noqa: F401  (fills the registry with lm-eval's own placeholders)
    from lm_eval.api.registry import model_registry

    from m1_harness.plugins import models

    for name, target in models().items():
        if name not in model_registry:
            model_registry.register(name, target=target)
    note_chat_template()


class _ChatTemplateNote:
    """lm-eval warns, for a model path that reads like an instruct or chat model, that its "chat template
    is not applied" unless --apply_chat_template is given. For ``m1_budget`` that is untrue: it applies
    the chat template to every prompt itself. This logging filter replaces that warning, when the run's
    model is m1_budget by name (``lm_eval --model m1_budget``), by a line that says so, and drops it
    when the model is a loaded M1BudgetLM (``m1-harness sweep``, which calls lm-eval once per setting)."""

    TEXT = "chat template is not applied"
    NOTE = (
        "m1_budget applies the model's chat template to every prompt itself "
        "(lm-eval's --apply_chat_template is not needed)"
    )

    def filter(self, record):
        if self.TEXT in " ".join(str(record.msg).split()):  # lm-eval wraps it
            how = _evaluating("m1_budget")
            if how == "instance":
                return False
            if how:
                record.msg, record.args, record.levelno, record.levelname = self.NOTE, (), 20, "INFO"
        return True


# the class registered as m1_budget, by name: this module stays stdlib-only and imports no model code
M1_BUDGET_CLASS = "m1_harness.thinking.lm.M1BudgetLM"


def _evaluating(model_name: str) -> str:
    """Whether the caller runs inside ``lm_eval.evaluator.simple_evaluate(model=...)`` for ``model_name``:
    ``"name"`` (given by name), ``"instance"`` (m1_budget given as a loaded M1BudgetLM), else ``""``."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "simple_evaluate" and frame.f_globals.get("__name__") == "lm_eval.evaluator":
            model = frame.f_locals.get("model")
            if isinstance(model, str):
                return "name" if model == model_name else ""
            loaded = model_name == "m1_budget" and any(
                f"{c.__module__}.{c.__qualname__}" == M1_BUDGET_CLASS for c in type(model).__mro__
            )
            return "instance" if loaded else ""
        frame = frame.f_back
    return ""


def note_chat_template():
    import logging

    logger = logging.getLogger("lm_eval.evaluator")
    if not any(isinstance(f, _ChatTemplateNote) for f in logger.filters):
        logger.addFilter(_ChatTemplateNote())


def patch_task_manager(manager_module):
    """Make every TaskManager include the plugin task folders after its own include_path."""
    cls = manager_module.TaskManager
    if getattr(cls, "_m1_harness_patched", False):
        return
    original_init = cls.__init__

    def __init__(self, *args, include_path=None, **kwargs):
        from m1_harness.plugins import task_dirs

        extra = [str(p) for p in task_dirs()]
        if include_path is None:
            paths = extra
        else:
            paths = list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
            paths += [p for p in extra if p not in {str(x) for x in paths}]
        original_init(self, *args, include_path=paths or None, **kwargs)

    cls.__init__ = __init__
    cls._m1_harness_patched = True


def patch_evaluator(evaluator_module):
    """``simple_evaluate`` checks limit, tasks and data before it builds the model (preflight.py)."""
    from m1_harness.preflight import preflighted

    evaluator_module.simple_evaluate = preflighted(evaluator_module.simple_evaluate)


def patch_evaluate_config(config_module):
    """lm-eval's "Tasks not found" becomes one sentence with the names meant (preflight.py)."""
    from m1_harness.preflight import preflighted_tasks

    cls = config_module.EvaluatorConfig
    cls.process_tasks = preflighted_tasks(cls.process_tasks)


def install_excepthook():
    """In an lm-eval process, an uncaught m1-harness UserError prints its sentence, not a traceback,
    and Ctrl-C one line saying what was kept."""
    from m1_harness.errors import INTERRUPTED_EVAL, UserError, format_user_error

    previous = sys.excepthook
    if getattr(previous, "_m1_harness", False):
        return

    def hook(kind, value, tb):
        if isinstance(value, UserError):
            sys.stderr.write(format_user_error(value, "lm_eval"))
        elif issubclass(kind, KeyboardInterrupt):
            sys.stderr.write(f"\nlm_eval: {INTERRUPTED_EVAL}\n")
        else:
            previous(kind, value, tb)

    hook._m1_harness = True
    sys.excepthook = hook


def _after_load(name, module):
    try:
        if name == "lm_eval.api.registry":
            register_model()
            install_excepthook()
        elif name == "lm_eval.tasks.manager":
            patch_task_manager(module)
        elif name == "lm_eval.evaluator":
            patch_evaluator(module)
            install_excepthook()
        elif name == "lm_eval.config.evaluate_config":
            patch_evaluate_config(module)
            install_excepthook()
    except Exception as exc:  # never break the user's interpreter
        _warn(exc)


class _Finder:
    """Wraps the loader of the two lm-eval modules so our code runs right after they execute."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _TARGETS:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_hook(module, _exec=exec_module, _name=fullname):
            _exec(module)
            _after_load(_name, module)

        loader.exec_module = exec_and_hook
        return spec


def install():
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
        for name in _TARGETS:  # lm-eval already imported (e.g. hook installed late)
            if name in sys.modules:
                _after_load(name, sys.modules[name])


try:
    install()
except Exception as exc:
    _warn(exc)
if os.environ.get("M1_HARNESS_DIE_WITH_PARENT"):  # a child of an engine that ties its children (lifetime.py)
    from m1_harness import lifetime

    lifetime.on_interpreter_start()
