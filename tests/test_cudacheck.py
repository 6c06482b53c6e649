"""The GPU user's install checked without a GPU (m1_harness/cudacheck.py): the CUDA lock against
pyproject's bounds and the install docs, and the engines' API_SURFACE against the CUDA wheels' sources.

The lock tests are offline (the pip resolve itself runs in ``make test-cuda``). The surface tests read
the newest vllm and sglang wheels within our bounds, downloaded once into build/wheels/ (PyPI).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from m1_harness import cudacheck
from m1_harness.cudacheck import CheckError, Sources, Surface, check_lock, check_surface

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_copy(tmp_path):
    """The files the lock check reads, copied so one can be made wrong."""
    for name in ("pyproject.toml", "constraints-cuda.txt", "README.md", "docs/install.md", "docs/engines.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_real_lock_bounds_and_docs_agree():
    pins = check_lock(REPO, online=False)
    assert (pins["vllm"], pins["torch"], pins["transformers"]) == ("0.33.0", "2.14.0", "5.20.2")


def _line_of(path: Path, text: str) -> int:
    return next(n for n, t in enumerate(path.read_text().splitlines(), 1) if text in t)


# (file, what is changed, into what, the check's sentence; {line}: the changed line's number)
WRONG = {
    "a wrong bound": (
        "pyproject.toml",
        '"vllm>=0.32,<0.34"',
        '"vllm>=0.32,<0.33"',
        "pyproject.toml: the bound vllm<0.33,>=0.32 excludes vllm==0.33.0 of constraints-cuda.txt; "
        "fix the bound or run `make lock`",
    ),
    "a base bound the GPU resolve leaves": (
        "pyproject.toml",
        '"transformers>=5.19,<6"',
        '"transformers>=5.21,<6"',
        "pyproject.toml: the bound transformers<6,>=5.21 excludes transformers==5.20.2 of constraints-cuda.txt; "
        "fix the bound or run `make lock`",
    ),
    "requires-python below the lock's needs": (
        "pyproject.toml",
        'requires-python = ">=3.11"',
        'requires-python = ">=3.10"',
        "pyproject.toml: requires-python = '>=3.10', but the packages of constraints-cuda.txt need Python >= 3.11; "
        'set requires-python = ">=3.11"',
    ),
    "a GPU install line without the lock": (
        "docs/install.md",
        'pip install -e ".[vllm]" -c constraints-cuda.txt',
        'pip install -e ".[vllm]"',
        'docs/install.md:{line}: a GPU install line without `-c constraints-cuda.txt`: pip install -e ".[vllm]"',
    ),
    "such a line on another docs page": (
        "docs/engines.md",
        '`pip install -e ".[vllm]" -c constraints-cuda.txt`',
        '`pip install -e ".[vllm]"`',
        "docs/engines.md:{line}: a GPU install line without `-c constraints-cuda.txt`: {text}",
    ),
    "a pin on a GPU install line that is not the lock's": (
        "docs/install.md",
        'pip install -e ".[vllm]" -c constraints-cuda.txt',
        'pip install -e ".[vllm]" -c constraints-cuda.txt torch==2.13.0',
        "docs/install.md:{line}: torch==2.13.0 disagrees with constraints-cuda.txt (torch==2.14.0): "
        'pip install -e ".[vllm]" -c constraints-cuda.txt torch==2.13.0',
    ),
    "the README naming another torch": (
        "README.md",
        "torch==2.14.0",
        "torch==2.13.0",
        "README.md: does not name torch==2.14.0, the version constraints-cuda.txt gives GPU users",
    ),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_disagreement_fails_with_a_sentence_naming_the_file(repo_copy, case):
    name, old, new, sentence = WRONG[case]
    path = repo_copy / name
    _edit(path, old, new)
    line = _line_of(path, new)
    with pytest.raises(CheckError) as err:
        check_lock(repo_copy, online=False)
    assert str(err.value) == sentence.format(line=line, text=path.read_text().splitlines()[line - 1].strip())


def test_pins_that_differ_by_python_get_markers_and_only_this_pythons_apply(tmp_path):
    lines = cudacheck.merge_pins(
        {
            "3.11": {"setuptools": "84.2.1", "torch": "2.14.0", "tomli": "2.2.1"},
            "3.12": {"setuptools": "80.9.0", "torch": "2.14.0"},
        }
    )
    assert lines == [
        'setuptools==84.2.1; python_version == "3.11"',
        'setuptools==80.9.0; python_version == "3.12"',
        'tomli==2.2.1; python_version == "3.11"',
        "torch==2.14.0",
    ]
    lock = tmp_path / "c.txt"
    lock.write_text("# a comment\n" + "\n".join(lines) + "\n")
    assert cudacheck.read_pins(lock) == {"setuptools": "84.2.1", "tomli": "2.2.1", "torch": "2.14.0"}  # CI: 3.11


def test_a_lock_line_that_is_not_a_pin_is_an_error_naming_it(tmp_path):
    lock = tmp_path / "c.txt"
    lock.write_text("torch==2.14.0\nvllm>=0.33\n")
    with pytest.raises(CheckError) as err:
        cudacheck.read_pins(lock)
    assert str(err.value) == "c.txt:2: not a name==version pin: vllm>=0.33"


# -- the API surface -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheels():
    try:
        return {dist: cudacheck.download_wheel(req) for dist, req in cudacheck.surface_wheels().items()}
    except CheckError as e:  # no PyPI: the surface check itself (make test-cuda) fails loudly instead
        pytest.skip(f"the CUDA wheels could not be downloaded: {e}")


def test_every_api_surface_entry_is_in_the_newest_cuda_wheels(wheels):
    assert sorted(p.name.split("-")[0] for p in wheels.values()) == ["sglang", "vllm"]
    assert check_surface(wheels) == []


def _sources_without(wheel: Path, dest: Path, file: str, old: str, new: str) -> Path:
    """The wheel's Python sources unpacked to ``dest``, with ``old`` replaced in ``file``."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest, [n for n in z.namelist() if n.endswith(".py")])
    _edit(dest / file, old, new)
    return dest


@pytest.mark.parametrize(
    "file, old, new, problem",
    [
        (
            "vllm/outputs.py",
            "self.num_cached_tokens = num_cached_tokens",
            "pass",
            "vllm.outputs.RequestOutput.num_cached_tokens: no num_cached_tokens in vllm.outputs.RequestOutput",
        ),
        (
            "vllm/v1/engine/llm_engine.py",
            "priority: int = 0,",
            "",
            "vllm.v1.engine.llm_engine.LLMEngine.add_request(request_id, prompt, params, priority): "
            "vllm.v1.engine.llm_engine.LLMEngine.add_request takes no priority",
        ),
        (
            "vllm/entrypoints/generate/base/serving.py",
            '"X-data-parallel-rank"',
            '"X-dp-rank"',
            "vllm.entrypoints 'X-data-parallel-rank': no 'X-data-parallel-rank' in vllm.entrypoints",
        ),
    ],
)
def test_a_symbol_removed_from_the_wheel_fails_the_check(wheels, tmp_path, file, old, new, problem):
    sources = _sources_without(wheels["vllm"], tmp_path / "vllm", file, old, new)
    assert check_surface({**wheels, "vllm": sources}) == [f"vllm: {problem}"]


def test_lookups_follow_lazy_exports_and_base_classes(wheels):
    vllm, sglang = Surface(Sources(wheels["vllm"])), Surface(Sources(wheels["sglang"]))
    assert vllm.missing("vllm.LLM") is None  # vllm/__init__.py's MODULE_ATTRS table
    assert vllm.missing("vllm.LLMs") == "no LLMs in vllm"
    assert vllm.missing("vllm.config.CacheConfig.num_gpu_blocks") is None  # re-exported by vllm.config
    # routed_dp_rank is a field of CompletionRequest's base class PDRoutingFields
    assert (
        sglang.missing("sglang.srt.entrypoints.openai.protocol.CompletionRequest(routed_dp_rank, dp)")
        == "sglang.srt.entrypoints.openai.protocol.CompletionRequest takes no dp"
    )


def test_a_malformed_entry_is_an_error_that_says_the_forms():
    with pytest.raises(CheckError) as err:
        Surface(Sources(REPO / "m1_harness")).missing("vllm.LLM(")
    assert str(err.value) == (
        "API_SURFACE entry 'vllm.LLM(': write dotted.path, dotted.path(arg, ...) or dotted.module 'text'"
    )
