"""Loading and validating benchmark items: one loader for every task and tool.

Where items come from, in order:
1. an explicit ``data`` argument (task metadata ``data=...``) or ``$M1_HARNESS_DATA``, naming
   either a directory of ``<benchmark>.jsonl`` files (the layout of ``shared/data/eval``) or a
   combined HuatuoGPT-o1 / m1 style JSON file ``{source_name: [items]}``;
2. otherwise the Hugging Face dataset ``UCSC-VLAA/m1_eval_data`` (downloaded with
   ``huggingface_hub.snapshot_download`` and read with the same two layouts).

Every item is validated. One that cannot be scored (no question, an option key scoring cannot read
whole, i.e. not capital letters or a number: ``scoring.KEY_SHAPE``; the answer key not among the
options, the answer's text not that option's) is an error naming the file, the line (or item index)
and what is wrong, so a broken data file never turns into a silently lower score; ``bad_items="skip"``
(task metadata) leaves such items out instead, each with the same message, and counts them. One that
can be scored despite a cosmetic defect (an empty option that is not the answer, option letters that
skip) is kept, with one warning naming where and what is odd: real benchmark files have these.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from m1_harness.errors import UserError
from m1_harness.paths import DATA_ENV, PACKAGE_DIR, read_utf8
from m1_harness.scoring import KEY_SHAPE

log = logging.getLogger(__name__)

HUB_DATASET = "UCSC-VLAA/m1_eval_data"
HUB_COMBINED_FILES = ("eval_data.json", "m1_eval_data.json")


@dataclass(frozen=True)
class BenchmarkInfo:
    key: str  # file stem in a data directory
    task: str  # lm-eval task name
    column: str  # short name used by the paper's tables
    aliases: tuple[str, ...]  # source names in combined files (normalised match)


BENCHMARKS: dict[str, BenchmarkInfo] = {
    b.key: b
    for b in (
        BenchmarkInfo("medmcqa", "m1_medmcqa", "MedMC", ("MedMCQA_validation", "MedMCQA")),
        BenchmarkInfo("medqa", "medqa", "MedQA", ("MedQA_USLME_test", "MedQA_USMLE_test", "MedQA")),
        BenchmarkInfo("pubmedqa", "m1_pubmedqa", "PubMed", ("PubMedQA_test", "PubMedQA")),
        BenchmarkInfo("mmlu_pro_med", "m1_mmlu_pro_med", "MMLU-P", ("MMLU-Pro_Medical_test", "MMLU-Pro_Medical")),
        BenchmarkInfo("gpqa_med", "m1_gpqa_med", "GPQA", ("GPQA_Medical_test", "GPQA_Medical")),
        BenchmarkInfo("lancet", "lancet", "Lancet", ("Lancet", "lancet_test")),
        BenchmarkInfo("nejm", "nejm", "NEJM", ("NEJM", "nejm_test")),
        BenchmarkInfo(
            "medbullets_op4", "medbullets4", "MedB (4)", ("medbullets_op4", "MedBullets_op4", "Medbullets-4")
        ),
        BenchmarkInfo(
            "medbullets_op5", "medbullets5", "MedB (5)", ("medbullets_op5", "MedBullets_op5", "Medbullets-5")
        ),
        BenchmarkInfo("medxpertqa", "medxpertqa", "MedX", ("MedXpertQA_test", "MedXpertQA", "MedXpertQA_Text")),
    )
}
DEMO_BENCHMARK = "m1_demo"
DEMO_FILE = PACKAGE_DIR / "demo_data" / f"{DEMO_BENCHMARK}.jsonl"


class DataError(UserError, ValueError):
    """Benchmark data that is missing or malformed; the message names where and what."""


class BadItem(DataError):
    """One item that cannot be scored: an error, or left out under ``bad_items="skip"``."""


BAD_ITEMS = ("error", "skip")
SKIP_HINT = """fix the item, or leave out the items that cannot be scored with --metadata '{"bad_items": "skip"}'"""


class Items(list):
    """The items of one benchmark in file order; ``skipped`` holds the message of each item left out."""

    skipped: tuple[str, ...] = ()


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _letter_runs(letters: list[str]) -> str:
    """``A-J, P`` for the letters A to J then P: consecutive runs joined."""
    runs: list[list[str]] = []
    for letter in letters:
        if runs and len(letter) == 1 == len(runs[-1][-1]) and ord(letter) == ord(runs[-1][-1]) + 1:
            runs[-1].append(letter)
        else:
            runs.append([letter])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _nth_letter_key(i: int) -> str:
    """The i-th key of the usual sequence A, ..., Z, AA, AB, ... (spreadsheet columns)."""
    key = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        key = chr(ord("A") + r) + key
    return key


def validate_item(item: object, where: str) -> dict:
    """Check one item and return it normalised (whitespace stripped, as m1 strips it).

    Raises ``BadItem`` when the item cannot be scored; logs one warning when it can but something
    about it is odd (the option texts and letters are kept as the file has them)."""
    if not isinstance(item, dict):
        raise BadItem(f"{where}: expected a JSON object, got {type(item).__name__}")
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadItem(f"{where}: 'question' is missing or empty")
    options = item.get("options")
    if not isinstance(options, dict) or len(options) < 2:
        raise BadItem(f"{where}: 'options' must be an object with at least two options, got {options!r}")
    clean_options, odd = {}, []
    for letter, text in options.items():
        key = str(letter).strip()
        if not KEY_SHAPE.fullmatch(key):
            plain = re.sub(r"[^A-Za-z0-9]", "", key).upper()
            rename = f" (e.g. {plain!r})" if KEY_SHAPE.fullmatch(plain) else ""
            raise BadItem(
                f"{where}: option key {key!r} cannot be scored exactly: keys must be capital letters "
                f"(A, B, ..., AA) or numbers (1, 2, ...); rename it{rename} and its answer_idx"
            )
        if key in clean_options:
            raise BadItem(f"{where}: option letter {key!r} appears twice")
        if text is not None and not isinstance(text, str):
            odd.append(f"option {key!r} is not text ({type(text).__name__}), read as {str(text)!r}")
            text = str(text)
        clean_options[key] = (text or "").strip()
    answer_idx = item.get("answer_idx")
    if not isinstance(answer_idx, str) or answer_idx not in clean_options:
        raise BadItem(f"{where}: 'answer_idx' {answer_idx!r} is not one of the options {sorted(clean_options)}")
    if not clean_options[answer_idx]:
        raise BadItem(f"{where}: option {answer_idx!r}, the answer, is empty")
    answer = item.get("answer")
    if not isinstance(answer, str) or answer.strip() != clean_options[answer_idx]:
        raise BadItem(f"{where}: 'answer' {answer!r} differs from option {answer_idx} {clean_options[answer_idx]!r}")
    odd += [f"option {k!r} is empty" for k, text in clean_options.items() if not text]
    letters = list(clean_options)
    numbered = all(k.isdigit() for k in letters)
    expected = [str(i + 1) if numbered else _nth_letter_key(i) for i in range(len(letters))]
    if letters != expected:
        odd.append(f"its option letters are {_letter_runs(letters)}, not {_letter_runs(expected)}")
    if odd:
        log.warning("%s: kept (its answer can be scored), though %s", where, "; ".join(odd))
    out = dict(item)
    out.update(question=question.strip(), options=clean_options, answer=answer.strip())
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(raw: object, where: str) -> None:
    """A JSON escape such as ``\\ud83d`` without its pair decodes to a lone surrogate: a str that no
    UTF-8 writer (lm-eval's datasets / pyarrow) can encode. Found here, it names the item and field."""
    if not isinstance(raw, dict):
        return
    fields = [("question", raw.get("question")), ("answer", raw.get("answer"))]
    if isinstance(raw.get("options"), dict):
        fields += [(f"option {k!r}", v) for k, v in raw["options"].items()]
    for name, text in fields:
        found = _SURROGATE.search(text) if isinstance(text, str) else None
        if found:
            raise BadItem(
                f"{where}: {name} holds a lone surrogate \\u{ord(found.group()):04x} at character "
                f"{found.start()} (half of an escaped UTF-16 pair): write the character itself, or both "
                "halves of its \\u escape"
            )


def _gather(records, benchmark: str, bad_items: str) -> Items:
    """Validated items from ``(where, index, raw item, problem reading it)`` records.

    ``index`` is the item's place in its file, skipped items included: an item's default id never
    depends on which other items were left out."""
    items, skipped = Items(), []
    for where, index, raw, problem in records:
        try:
            if problem:
                raise BadItem(f"{where}: {problem}")
            _lone_surrogate(raw, where)
            item = validate_item(raw, where)
        except BadItem as exc:
            if bad_items != "skip":
                raise BadItem(f"{exc}. To go on: {SKIP_HINT}") from None
            log.warning("%s; skipped (bad_items=skip)", exc)
            skipped.append(str(exc))
            continue
        item.setdefault("id", f"{benchmark}-{index:05d}")
        items.append(item)
    items.skipped = tuple(skipped)
    return items


def _jsonl_records(path: Path):
    index = 0
    for lineno, line in enumerate(read_utf8(path, DataError).split("\n"), 1):  # not splitlines: JSON may hold U+2028
        if not line.strip():
            continue
        raw, problem = None, None
        try:
            raw = json.loads(line.rstrip("\r"))
        except json.JSONDecodeError as exc:
            problem = f"not valid JSON ({exc.msg} at column {exc.colno})"
        yield f"{path}:{lineno}", index, raw, problem
        index += 1


def read_jsonl(path: Path, benchmark: str, bad_items: str = "error") -> Items:
    items = _gather(_jsonl_records(path), benchmark, bad_items)
    if not items:
        left_out = f" ({len(items.skipped)} left out: they cannot be scored)" if items.skipped else ""
        raise DataError(f"{path}: no items{left_out}")
    return items


def read_combined(path: Path, benchmark: str, bad_items: str = "error") -> Items | None:
    """Items of ``benchmark`` from a combined ``{source_name: [items]}`` file; None if absent."""
    try:
        combined = json.loads(read_utf8(path, DataError))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(combined, dict):
        raise DataError(f"{path}: expected an object {{source_name: [items]}}, got {type(combined).__name__}")
    info = BENCHMARKS.get(benchmark)
    wanted = {_norm(a) for a in (info.aliases if info else ())} | {_norm(benchmark)}
    for source, raw_items in combined.items():
        if _norm(source) not in wanted:
            continue
        if not isinstance(raw_items, list):
            raise DataError(f"{path}: source {source!r} must be a list of items")
        return _gather(
            ((f"{path}: {source}[{i}]", i, raw, None) for i, raw in enumerate(raw_items)), benchmark, bad_items
        )
    return None


def _names_benchmark(path: Path, benchmark: str) -> bool:
    """True when a file's stem names ``benchmark`` (its key, task name or a source alias)."""
    info = BENCHMARKS.get(benchmark)
    names = {benchmark, *(info.aliases if info else ()), *((info.task,) if info else ())}
    return _norm(path.stem) in {_norm(n) for n in names}


def _from_location(
    location: Path, benchmark: str, setting: str = DATA_ENV, shared: bool = True, bad_items: str = "error"
) -> Items | None:
    """Items of ``benchmark`` at ``location``; None when the location does not hold it.

    ``shared``: the location serves every benchmark of a run (``$M1_HARNESS_DATA``, ``--metadata
    data``), so a lone JSONL file is used only for the benchmark it is named after; any other
    benchmark loading it would report that file's items under its own name."""
    if location.is_dir():
        path = location / f"{benchmark}.jsonl"
        if path.is_file():
            return read_jsonl(path, benchmark, bad_items)
        for name in HUB_COMBINED_FILES:
            if (location / name).is_file():
                found = read_combined(location / name, benchmark, bad_items)
                if found is not None:
                    return found
        return None
    if location.is_file():
        if location.suffix == ".jsonl":
            if shared and not _names_benchmark(location, benchmark):
                raise DataError(
                    f"{setting}={str(location)!r} is one JSONL file, named for another benchmark than "
                    f"{benchmark!r}: a single file serves only the benchmark it is named after "
                    f"({benchmark}.jsonl). Point {setting} at the folder of <benchmark>.jsonl files "
                    f"(e.g. {str(location.parent)!r}), or at a combined {{source_name: [items]}} JSON file."
                )
            return read_jsonl(location, benchmark, bad_items)
        return read_combined(location, benchmark, bad_items)
    raise DataError(
        f"{setting}={str(location)!r} does not exist: point it at the folder of <benchmark>.jsonl files "
        "(or a combined {source_name: [items]} JSON file)"
    )


def hub_snapshot(repo_id: str = HUB_DATASET) -> Path:
    """Download (or find in the HF cache) the m1 evaluation dataset; honours HF_HUB_OFFLINE."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo_id, repo_type="dataset"))


def load_items(
    benchmark: str,
    data: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    *,
    bad_items: str = "error",
) -> Items:
    """All items of one benchmark, validated, in file order.

    ``data``: a location shared by every benchmark of the run (task metadata ``data``), else
    ``$M1_HARNESS_DATA``; ``source``: the one file a plugin registered for this benchmark.
    ``bad_items``: ``error`` (an item that cannot be scored stops the load) or ``skip`` (it is left
    out with a warning and counted in ``Items.skipped``; the other items and their ids are unchanged)."""
    if bad_items not in BAD_ITEMS:
        raise DataError(
            f"bad_items={bad_items!r}: use 'error' (the default: an item that cannot be scored is an "
            f"error) or 'skip' (leave such items out, each with a warning, and count them)"
        )
    items = _load(benchmark, data, source, bad_items)
    if items.skipped:
        log.warning(
            "%s: %d item(s) left out because they cannot be scored (bad_items=skip); %d evaluated",
            benchmark,
            len(items.skipped),
            len(items),
        )
    return items


def _load(benchmark: str, data, source, bad_items: str) -> Items:
    if source is not None and data is None:
        if not Path(source).expanduser().exists():
            raise DataError(
                f"benchmark {benchmark!r}: its data file {str(source)!r}, registered by a plugin, does not "
                "exist: reinstall the plugin with its data files (package-data), or pass data=PATH"
            )
        found = _from_location(Path(source).expanduser(), benchmark, "source", shared=False, bad_items=bad_items)
        if found is None:
            raise DataError(f"benchmark {benchmark!r} not found in its registered source {str(source)!r}")
        return found
    if benchmark == DEMO_BENCHMARK and data is None:
        return read_jsonl(DEMO_FILE, benchmark, bad_items)
    setting = "data" if data is not None else DATA_ENV
    location = data if data is not None else os.environ.get(DATA_ENV)
    if location:
        found = _from_location(Path(location).expanduser(), benchmark, setting, bad_items=bad_items)
        if found is None:
            names = BENCHMARKS[benchmark].aliases if benchmark in BENCHMARKS else (benchmark,)
            raise DataError(
                f"benchmark {benchmark!r} not found in {str(location)!r}: expected {benchmark}.jsonl in that "
                f"directory or a source named like {', '.join(names)} in a combined JSON file"
            )
        return found
    try:
        snapshot = hub_snapshot()
    except Exception as exc:
        raise DataError(
            f"benchmark {benchmark!r}: {DATA_ENV} is not set and the Hugging Face dataset {HUB_DATASET} "
            f"could not be loaded ({type(exc).__name__}: {exc}). Set {DATA_ENV} to a directory of "
            f"<benchmark>.jsonl files or a combined eval JSON file."
        ) from exc
    found = _from_location(snapshot, benchmark, bad_items=bad_items)
    if found is None:
        found = _search_snapshot(snapshot, benchmark, bad_items)
    if found is None:
        raise DataError(f"benchmark {benchmark!r} not found in the Hugging Face dataset {HUB_DATASET} ({snapshot})")
    return found


def _search_snapshot(snapshot: Path, benchmark: str, bad_items: str) -> Items | None:
    """Hub repos may nest files in folders: try every JSONL named for the benchmark, then every JSON."""
    for path in sorted(snapshot.rglob(f"{benchmark}.jsonl")):
        return read_jsonl(path, benchmark, bad_items)
    for path in sorted(snapshot.rglob("*.json")):
        found = read_combined(path, benchmark, bad_items)
        if found is not None:
            return found
    return None
