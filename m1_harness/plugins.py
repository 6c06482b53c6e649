"""The plugin manager: default plugins, entry-point plugins, the allow-list, and the registries.

Loading is lazy and idempotent (nothing happens until a registry is asked for) and strict: a
plugin that fails to import, or implements a hook that does not exist, is an error naming the
plugin and its distribution, never a silent no-op.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pluggy

from m1_harness import PROJECT_NAME, hookspecs
from m1_harness.errors import UserError

ALLOW_ENV = "M1_HARNESS_LOAD_PLUGINS"

# Built-in parts, registered through the same hooks as third-party plugins.
DEFAULT_PLUGINS = (
    "m1_harness.default_plugins",
    "m1_harness.curation.plugin",
    "m1_harness.training.plugin",
)


class PluginError(UserError, RuntimeError):
    """A plugin could not be loaded or implements something m1-harness does not know."""


@dataclass(frozen=True)
class Benchmark:
    """A JSONL multiple-choice benchmark registered through ``m1_register_benchmarks``."""

    name: str
    path: Path
    group: str | None
    plugin: str


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_dists: dict[str, str] = {}  # plugin name -> "distribution version" for entry-point plugins


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_points():
    return importlib.metadata.entry_points(group=PROJECT_NAME)


def _describe(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return f"plugin {ep.name!r} (entry point {ep.value!r})"
    return f"plugin {ep.name!r} from distribution {dist.metadata['Name']} {dist.version} (entry point {ep.value!r})"


def _check_pending(pm: pluggy.PluginManager) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        where = _dists.get(name, "built in")
        raise PluginError(
            f"m1-harness plugin {name!r} ({where}) implements a hook that does not exist: {exc}. "
            f"Known hooks: {', '.join(sorted(_hook_names()))}"
        ) from exc


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("m1_")]


def get_plugin_manager() -> pluggy.PluginManager:
    """The one plugin manager, created and loaded on first use."""
    global _pm
    with _lock:
        if _pm is not None:
            return _pm
        pm = pluggy.PluginManager(PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        allowed = _allowed_names()
        for ep in _entry_points():
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(f"could not load {_describe(ep)}: {type(exc).__name__}: {exc}") from exc
            dist = getattr(ep, "dist", None)
            if dist is not None:
                _dists[ep.name] = f"{dist.metadata['Name']} {dist.version}"
            try:
                pm.register(module, name=ep.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"invalid {_describe(ep)}: {exc}") from exc
        for modname in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(modname), name=modname)
        _check_pending(pm)
        _pm = pm
        return pm


def reset() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in a running process)."""
    global _pm
    with _lock:
        _pm = None
        _dists.clear()


def _collect(hook_name: str) -> list[tuple[str, tuple, dict]]:
    """Call one register-style hook; return (plugin name, args, kwargs) per register() call."""
    pm = get_plugin_manager()
    calls: list[tuple[str, tuple, dict]] = []
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(*args, _p=plugin_name, **kwargs):
            calls.append((_p, args, kwargs))

        impl.function(register=register)
    return calls


def _named_registry(hook_name: str, what: str) -> dict[str, object]:
    registry: dict[str, object] = {}
    owners: dict[str, str] = {}
    for plugin, args, kwargs in _collect(hook_name):
        name, obj = _two_args(args, kwargs, what, plugin)
        if name in registry and registry[name] is not obj:
            raise PluginError(f"{what} {name!r} is registered twice: by {owners[name]!r} and by {plugin!r}")
        registry[name] = obj
        owners[name] = plugin
    return registry


def _two_args(args, kwargs, what, plugin):
    params = list(args) + list(kwargs.values())
    if len(params) != 2 or not isinstance(params[0], str):
        raise PluginError(f"plugin {plugin!r}: register() for a {what} takes (name, object), got {args!r} {kwargs!r}")
    return params[0], params[1]


def task_dirs() -> list[Path]:
    """Every folder of task YAMLs registered by plugins, built-in ones first."""
    dirs: list[Path] = []
    for plugin, args, kwargs in _collect("m1_register_tasks"):
        params = list(args) + list(kwargs.values())
        if len(params) != 1:
            raise PluginError(f"plugin {plugin!r}: register() for tasks takes one folder, got {params!r}")
        path = Path(params[0])
        if not path.is_dir():
            raise PluginError(f"plugin {plugin!r} registered task folder {str(path)!r}, which is not a directory")
        dirs.append(path)
    from m1_harness.benchmarks import generated_task_dir

    generated = generated_task_dir(benchmarks())
    if generated is not None:
        dirs.append(generated)
    return dirs


def benchmarks() -> list[Benchmark]:
    """JSONL benchmarks registered through ``m1_register_benchmarks``."""
    out: list[Benchmark] = []
    for plugin, args, kwargs in _collect("m1_register_benchmarks"):
        try:
            bound = _bind_benchmark(*args, **kwargs)
        except TypeError as exc:
            raise PluginError(f"plugin {plugin!r}: register(name, path, group=None) for a benchmark: {exc}") from exc
        out.append(Benchmark(plugin=plugin, **bound))
    return out


def _bind_benchmark(name, path, group=None):
    return {"name": str(name), "path": Path(path), "group": group}


def models() -> dict[str, str]:
    """lm-eval model names -> ``"module:Class"`` import targets."""
    registry = _named_registry("m1_register_models", "model")
    for name, target in registry.items():
        if not isinstance(target, str) or ":" not in target:
            raise PluginError(f"model {name!r} must be registered as 'package.module:ClassName', got {target!r}")
    return registry  # type: ignore[return-value]


def stages() -> dict[str, object]:
    """Curation stages by name."""
    return _named_registry("m1_register_stages", "curation stage")


def trainers() -> dict[str, object]:
    """Training stages by name."""
    return _named_registry("m1_register_trainers", "trainer")


def describe_plugins() -> list[dict]:
    """Name, version and implemented hooks of every loaded plugin (for ``m1-harness plugins``)."""
    import m1_harness

    pm = get_plugin_manager()
    rows = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        if name in _dists:
            dist, version = _dists[name].rsplit(" ", 1)
        else:
            dist, version = "m1-harness", m1_harness.__version__
        rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
    return rows
