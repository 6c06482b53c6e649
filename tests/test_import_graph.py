"""The import graph of m1_harness/, read with ``ast``: no circle (counting imports inside functions, so
none can hide a circle there) and no ``from x import _private`` across files."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "m1_harness"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path):
    """(line, imported module, imported name or None) for every m1_harness import of one file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "m1_harness")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "m1_harness":
                yield from ((node.lineno, target, a.name) for a in node.names)


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for _, target, imported in imports(name, path):
            sub = f"{target}.{imported}"
            dest = sub if sub in MODULES else target  # `from pkg import module` depends on the module
            if dest in MODULES and dest != name:
                edges[name].add(dest)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    state, stack, found = {}, [], []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == "open":
                found.append(stack[stack.index(v) :] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for u in sorted(edges):
        if u not in state:
            visit(u)
    return found


def test_walker_sees_a_circle():
    """The checks can fail: a two-module circle through a function-level import is found."""
    edges = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert cycles(edges) == [["a", "b", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_circle():
    found = [" -> ".join(c) for c in cycles(graph())]
    assert found == [], "import circles (imports inside functions count):\n" + "\n".join(found)


def test_no_private_name_imported_across_files():
    """A leading-underscore module is private to its package and may be imported inside it; a
    leading-underscore name inside a module is private to that file."""
    bad = []
    for name, path in MODULES.items():
        for line, target, imported in imports(name, path):
            if (
                imported
                and imported.startswith("_")
                and not imported.startswith("__")
                and f"{target}.{imported}" not in MODULES
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line}: from {target} import {imported}")
    assert bad == [], "\n".join(bad)
