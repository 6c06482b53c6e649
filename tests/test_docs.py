"""The docs stay true to the code: the model_args page is the table, every page is reachable from the
README, and every docs page or README anchor the code cites exists."""

import re
from pathlib import Path

import pytest

from m1_harness import docs_gen
from m1_harness.docs_gen import MODEL_ARGS_PAGE, render_model_args

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Where code cites docs: the package, tests, benchmarks, the Makefile and pyproject (not this file,
# whose examples cite pages that do not exist on purpose).
CODE = [
    f
    for f in (
        *sorted((ROOT / "m1_harness").rglob("*.py")),
        *sorted((ROOT / "tests").rglob("*.py")),
        *sorted((ROOT / "benchmarks").rglob("*.py")),
        ROOT / "Makefile",
        ROOT / "pyproject.toml",
    )
    if f != Path(__file__).resolve()
]
CITED_DOC = re.compile(r"(?<![\w/.])docs/([\w./-]+?\.md)(?:#([\w-]+))?")
CITED_README = re.compile(r"README\.md#([\w-]+)")
# A section named instead of linked ("README, 'vLLM on CPU'"), or a design note outside the repo.
NAMED_SECTION = re.compile(r"README(?:'s)?,? ['\"(]|README, [A-Z]|README,? section|ARCHITECTURE\.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    """Every heading anchor of a Markdown file (code blocks skipped; repeats get -1, -2 as on GitHub)."""
    seen: dict[str, int] = {}
    out, fenced = set(), False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_follows_github():
    assert slug("Served models: one replica or many") == "served-models-one-replica-or-many"
    assert slug("One command per node (data parallel)") == "one-command-per-node-data-parallel"
    assert slug("Sampling: `samples` and seeds") == "sampling-samples-and-seeds"
    assert slug("m1_register_tasks") == "m1_register_tasks"
    assert slug("Sampling again or thinking longer: maj@k, pass@k, mean@k at matched compute") == (
        "sampling-again-or-thinking-longer-majk-passk-meank-at-matched-compute"
    )


def test_model_args_page_is_the_table():
    assert MODEL_ARGS_PAGE.read_text(encoding="utf-8") == render_model_args(), (
        "docs/model_args.md differs from MODEL_ARGS in m1_harness/thinking/lm.py: run `python -m m1_harness.docs_gen`"
    )


def test_check_fails_when_the_table_changes(monkeypatch, capsys):
    assert docs_gen.main(["--check"]) == 0
    monkeypatch.setitem(docs_gen.MODEL_ARGS, "new_arg", (int, 3, "an argument the page does not know yet"))
    assert "| `new_arg` | int | `3` | all | an argument the page does not know yet |" in render_model_args()
    assert docs_gen.main(["--check"]) == 1
    assert (
        capsys.readouterr().err == f"{MODEL_ARGS_PAGE} differs from MODEL_ARGS: run `python -m m1_harness.docs_gen`\n"
    )


def test_readme_is_short_and_does_not_repeat_the_model_args_table():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 220
    assert "| model_arg |" not in text


def test_every_docs_page_is_in_the_readme_table():
    table = {
        Path(link).name
        for link in LINK.findall(README.read_text(encoding="utf-8"))
        if link.startswith("docs/") and link.endswith(".md")
    }
    assert table == {p.name for p in DOCS.glob("*.md")}


@pytest.mark.parametrize(
    "page",
    [README, ROOT / "benchmarks" / "README.md", *sorted(DOCS.glob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_link_in_the_docs_resolves(page):
    broken = []
    for link in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists() or (anchor and anchor not in anchors(path)):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_every_docs_page_and_readme_anchor_cited_in_the_code_exists():
    missing = []
    for f in CODE:
        text = f.read_text(encoding="utf-8")
        for page, anchor in CITED_DOC.findall(text):
            path = DOCS / page
            if not path.is_file() or (anchor and anchor not in anchors(path)):
                missing.append(f"{f.relative_to(ROOT)}: docs/{page}{'#' + anchor if anchor else ''}")
        missing += [
            f"{f.relative_to(ROOT)}: README.md#{a}" for a in CITED_README.findall(text) if a not in anchors(README)
        ]
    assert not missing


def test_the_citation_check_sees_a_missing_page_and_anchor():
    assert CITED_DOC.findall("see docs/engines.md#vllm-on-cpu, docs/nope.md") == [
        ("engines.md", "vllm-on-cpu"),
        ("nope.md", ""),
    ]
    assert "vllm-on-cpu" in anchors(DOCS / "engines.md") and "no-such-heading" not in anchors(DOCS / "engines.md")


def test_the_code_cites_pages_not_section_names():
    named = [
        f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
        for f in CODE
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if NAMED_SECTION.search(line)
    ]
    assert not named


def test_docs_keep_no_measurement_history():
    """Dates, "before issue N" and machine loads belong in benchmarks/README.md or the results files."""
    history = re.compile(r"\b20\d\d-\d\d-\d\d\b|before issue \d+|load average|machine's load")
    found = [
        f"{p.name}: {m.group(0)}"
        for p in [README, *DOCS.glob("*.md")]
        for m in history.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not found


def test_readme_plugin_example_ships_its_data_like_the_example_package():
    """The README's pyproject must carry package-data, or `pip install .` ships no JSONL (issue 25)."""
    tomllib = pytest.importorskip("tomllib")  # the stdlib's from Python 3.11

    section = README.read_text(encoding="utf-8").split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    toml_block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    readme = tomllib.loads(toml_block)
    example = tomllib.loads((ROOT / "plugins" / "example" / "pyproject.toml").read_text(encoding="utf-8"))
    assert readme["project"]["entry-points"] == example["project"]["entry-points"]
    assert readme["tool"]["setuptools"]["package-data"] == example["tool"]["setuptools"]["package-data"]
    assert "build-system" in readme
