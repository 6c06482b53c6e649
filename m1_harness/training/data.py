"""Training data: load it (local JSONL / JSON, a dataset folder, or a Hugging Face Hub id), recognise its
layout, and turn every record into a prompt / completion pair in the m1 thinking format.

Layouts accepted (``data_format``; ``auto`` picks the first whose fields are all present):

- ``prompt_completion``: ``prompt`` (a user message, or text already rendered with the chat template,
  or a list of chat messages) and ``completion`` (used as is).
- ``m1_hub``: the released m1 sets ``UCSC-VLAA/m1k-tokenized`` / ``m23k-tokenized`` (``prompt`` holding
  the question and its ``A. text`` option lines, ``reasoning`` from DeepSeek-R1,
  ``distilled_answer_string``; their ``text`` column is ignored and rebuilt with the model's own
  chat template, as m1's ``tokenize_sample`` built it for Qwen2.5).
- ``sft_sample``: the project sample (``question``, ``options``, ``complex_cot``, ``response``).

The prompt is the question as the user message of the model's chat template (its default system
prompt included) with the generation prompt; the completion is
``<|im_start|>think\\n{reasoning}\\n<|im_start|>answer\\nAnswer: {answer}<|im_end|>``, as m1 trained.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from m1_harness.errors import UserError
from m1_harness.paths import read_utf8
from m1_harness.prompts import END_OF_TURN, chat_prompt, sft_completion, sft_prompt
from m1_harness.thinking.markers import PRESETS as MARKER_PRESETS

log = logging.getLogger("m1_harness.training")

FORMATS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "m1_hub": ("prompt", "reasoning", "distilled_answer_string"),
    "sft_sample": ("question", "complex_cot", "response"),
}
HUB_DATASETS = ("UCSC-VLAA/m1k-tokenized", "UCSC-VLAA/m23k-tokenized")


class DataError(UserError, ValueError):
    """Training data that cannot be used: missing file or field, bad JSON, nothing left to train on."""


@dataclass
class DataStats:
    source: str
    data_format: str
    records: int
    max_length: int
    overlong: int = 0
    overlong_policy: str = "truncate"
    longest: int = 0
    prompt_too_long: int = 0  # prompt alone fills max_length: no completion token left, skipped
    kept: int = 0
    total_tokens: int = 0  # tokens of the kept sequences after truncation (one epoch)
    completion_tokens: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def report(self) -> str:
        what = "dropped" if self.overlong_policy == "drop" else f"truncated to {self.max_length} tokens"
        skipped = f"; {self.prompt_too_long} skipped: the prompt alone fills max_length" if self.prompt_too_long else ""
        return (
            f"{self.source}: {self.records} records ({self.data_format}); {self.overlong} longer than "
            f"max_length {self.max_length} (longest {self.longest} tokens): {what}{skipped}; {self.kept} used"
        )

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("lengths")
        return d


# ----------------------------------------------------------------------------- loading


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(read_utf8(path, DataError).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {n}: a record must be a JSON object, got {type(row).__name__}")
        row["__line__"] = n
        rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict]:
    try:
        data = json.loads(read_utf8(path, DataError))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of records")
    return data


def load_records(data: str, split: str = "train", limit: int | None = None) -> tuple[list[dict], str]:
    """Records and a name for messages. ``data``: a .jsonl/.json file, a folder, or a Hub dataset id.

    A folder holding .jsonl / .json files is read file by file (errors name the file and line);
    any other folder or id goes through ``datasets.load_dataset`` (parquet folders, saved Hub
    snapshots, and the Hub itself for ``UCSC-VLAA/m1k-tokenized`` and ``m23k-tokenized``).
    """
    path = Path(data).expanduser()
    files: list[Path] = []
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json") and p.is_file())
    if files:
        rows: list[dict] = []
        for f in files:
            if f.suffix == ".jsonl":
                part = _read_jsonl(f)
            elif f.suffix == ".json":
                part = _read_json(f)
            else:
                part = _load_with_datasets(str(f), split, builder=f.suffix.lstrip("."))
            for r in part:
                r["__file__"] = str(f)
            rows.extend(part)
            if limit is not None and len(rows) >= limit:
                break
        source = str(files[0]) if len(files) == 1 else str(path)
    else:
        if not path.exists() and ("/" not in data or data.startswith((".", "/", "~"))):
            raise DataError(f"{data}: no such file or folder (and not a Hugging Face dataset id)")
        rows = _load_with_datasets(str(path) if path.exists() else data, split)
        source = data
    if not rows:
        raise DataError(f"{source}: no records")
    if limit is not None:
        rows = rows[: int(limit)]
    return rows, source


def _load_with_datasets(name: str, split: str, builder: str | None = None) -> list[dict]:
    import datasets

    try:
        if builder:
            ds = datasets.load_dataset(builder, data_files=name, split=split)
        else:
            ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # network, missing split, unknown id: say which dataset
        raise DataError(f"{name}: could not load the dataset ({type(exc).__name__}: {exc})") from exc
    return [dict(r) for r in ds]


# ----------------------------------------------------------------------------- layout


def _present(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip()) and value != []


def detect_format(rows: list[dict], source: str, requested: str = "auto") -> str:
    """The layout of ``rows``; an error naming the missing field and the file when none fits."""
    columns = [c for c in rows[0] if not c.startswith("__")]
    seen = set()
    for r in rows:
        seen.update(k for k, v in r.items() if v is not None and not k.startswith("__"))
    if requested != "auto":
        candidates = [requested]
    else:
        candidates = [f for f, need in FORMATS.items() if all(k in seen for k in need)]
        if not candidates:
            # the closest layout, to name what is missing
            candidates = [max(FORMATS, key=lambda f: sum(k in seen for k in FORMATS[f]))]
    fmt = candidates[0]
    missing = [k for k in FORMATS[fmt] if k not in seen]
    if missing:
        others = "; ".join(f"{f} ({', '.join(need)})" for f, need in FORMATS.items() if f != fmt)
        raise DataError(
            f"{source}: missing field {missing[0]!r} needed for the {fmt} format ({', '.join(FORMATS[fmt])}); "
            f"the records have: {', '.join(columns) or 'no fields'}. Other accepted layouts: {others}"
        )
    return fmt


def _where(row: dict, index: int, source: str) -> str:
    if "__line__" in row:
        return f"{row.get('__file__', source)}, line {row['__line__']}"
    return f"{source}, record {index}"


def _need(row: dict, key: str, index: int, source: str, fmt: str):
    value = row.get(key)
    if not _present(value):
        raise DataError(
            f"{_where(row, index, source)}: field {key!r} is missing or empty (needed for the {fmt} format)"
        )
    return value


def end_of_turn(tokenizer) -> str:
    vocab = tokenizer.get_vocab()
    return END_OF_TURN if END_OF_TURN in vocab else tokenizer.eos_token


def build_completion(reasoning: str, answer: str, tokenizer, markers: str = "m1") -> str:
    return sft_completion(reasoning, answer, markers, end=end_of_turn(tokenizer))


def render_prompt(question: str, tokenizer) -> str:
    try:
        return chat_prompt(question, tokenizer)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def to_prompt_completion(rows: list[dict], fmt: str, source: str, tokenizer, markers: str = "m1") -> list[dict]:
    if markers not in MARKER_PRESETS:
        raise DataError(f"unknown markers {markers!r}; known: {', '.join(MARKER_PRESETS)}")
    out = []
    for i, row in enumerate(rows):
        if fmt == "prompt_completion":
            prompt = _need(row, "prompt", i, source, fmt)
            completion = _need(row, "completion", i, source, fmt)
            if isinstance(prompt, str):
                if not prompt.lstrip().startswith("<|im_start|>"):
                    prompt = render_prompt(prompt, tokenizer)
            out.append({"prompt": prompt, "completion": completion})
            continue
        if fmt == "m1_hub":
            question = str(_need(row, "prompt", i, source, fmt)).strip()
            reasoning = _need(row, "reasoning", i, source, fmt)
            answer = _need(row, "distilled_answer_string", i, source, fmt)
        elif fmt == "sft_sample":
            question = sft_prompt(_need(row, "question", i, source, fmt), row.get("options"))
            reasoning = _need(row, "complex_cot", i, source, fmt)
            answer = _need(row, "response", i, source, fmt)
        else:
            raise DataError(f"unknown data format {fmt!r}; known: {', '.join(FORMATS)}")
        out.append(
            {
                "prompt": render_prompt(question, tokenizer),
                "completion": build_completion(reasoning, answer, tokenizer, markers),
            }
        )
    return out


def apply_length_policy(pairs: list[dict], tokenizer, max_length: int, policy: str, stats: DataStats) -> list[dict]:
    """Count sequences longer than ``max_length``; drop them (``drop``) or leave them for truncation."""
    kept = []
    for p in pairs:
        if isinstance(p["prompt"], str):
            n = len(tokenizer(p["prompt"] + p["completion"])["input_ids"])
            n_prompt = len(tokenizer(p["prompt"])["input_ids"])
        else:  # conversational: TRL renders it; count the rendered text
            text = tokenizer.apply_chat_template(p["prompt"] + p["completion"], tokenize=False)
            n = len(tokenizer(text)["input_ids"])
            n_prompt = len(
                tokenizer(tokenizer.apply_chat_template(p["prompt"], tokenize=False, add_generation_prompt=True))[
                    "input_ids"
                ]
            )
        stats.lengths.append(n)
        stats.longest = max(stats.longest, n)
        if n > max_length:
            stats.overlong += 1
            if policy == "drop":
                continue
        if n_prompt >= max_length:  # truncation would leave no completion token: nothing to learn
            stats.prompt_too_long += 1
            continue
        kept.append(p)
        used = min(n, max_length)
        stats.total_tokens += used
        stats.completion_tokens += used - n_prompt
    stats.kept = len(kept)
    stats.overlong_policy = policy
    return kept


def load_and_check(cfg) -> tuple[list[dict], str, str]:
    """Records, their source and layout, every record checked for its fields (no tokenizer needed,
    so bad data fails before a large model's files are touched)."""
    rows, source = load_records(cfg.data, cfg.data_split, cfg.limit)
    fmt = detect_format(rows, source, cfg.data_format)
    for i, row in enumerate(rows):
        for key in FORMATS[fmt]:
            _need(row, key, i, source, fmt)
    return rows, source, fmt


def prepare(cfg, tokenizer, checked=None) -> tuple[list[dict], DataStats]:
    """Load ``cfg.data`` and return prompt / completion pairs ready for TRL, and what was done to them."""
    rows, source, fmt = checked or load_and_check(cfg)
    pairs = to_prompt_completion(rows, fmt, source, tokenizer, cfg.markers)
    stats = DataStats(source=source, data_format=fmt, records=len(rows), max_length=int(cfg.max_length))
    pairs = apply_length_policy(pairs, tokenizer, int(cfg.max_length), cfg.overlong, stats)
    if not pairs:
        raise DataError(
            f"{source}: no record left to train on: all {stats.records} are longer than max_length "
            f"{cfg.max_length} (overlong={cfg.overlong}); raise max_length or use --overlong truncate"
        )
    return pairs, stats
