"""collect: the four m1 source sets (or local files) into one item schema.

Each entry of ``sources`` is a mapping:

- ``{format: medmcqa}`` loads the Hugging Face dataset (``openlifescienceai/medmcqa``, split
  ``train``) and maps its fields; ``hub``/``config``/``split`` override the dataset id, config and
  split; ``data_files`` (a local JSON/JSONL/Parquet file in the hub layout) loads the same layout
  without the Hub.
- ``{path: file.jsonl}`` (``format: items``, the default for ``path``) reads a file already in the
  project item format (``question``, ``options``, ``answer_idx``, ``answer``).
- ``source`` names the dataset in ``item["source"]`` (default: the format name, or the file stem);
  ``limit`` keeps the first N rows; ``id_prefix`` prefixes ids (default: the source name for hub
  formats, nothing for project-format files, whose ids are kept).

Items that cannot be mapped (missing fields, an answer letter that is not an option) are rejected
with their ids; ids are made unique (``<source>-<n>`` when the row has none).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from m1_harness.curation.items import LETTERS, problems, read_jsonl
from m1_harness.curation.stage import Stage, StageError

PUBMEDQA_INSTRUCTION = (
    "Using the above document as a reference, please review the following question and choose the option "
    "you find most appropriate."
)


def map_medmcqa(row: dict) -> dict:
    """openlifescienceai/medmcqa: question, opa..opd, cop (0-3), id, subject_name."""
    options = {L: row.get(k) for L, k in zip("ABCD", ("opa", "opb", "opc", "opd"))}
    cop = row.get("cop")
    idx = "ABCD"[cop] if isinstance(cop, int) and 0 <= cop < 4 else (str(cop) if cop is not None else None)
    return {
        "id": row.get("id"),
        "question": row.get("question"),
        "options": options,
        "answer_idx": idx,
        "answer": options.get(idx) if idx in options else None,
        "meta": {k: row.get(k) for k in ("subject_name", "topic_name", "choice_type") if row.get(k) is not None},
    }


def map_medqa(row: dict) -> dict:
    """GBaker/MedQA-USMLE-4-options (and the 5-option layout): question, options{A..}, answer_idx, answer."""
    options = row.get("options")
    if isinstance(options, list):  # some exports store [{"key": "A", "value": ...}]
        options = {o.get("key"): o.get("value") for o in options if isinstance(o, dict)}
    return {
        "id": row.get("id"),
        "question": row.get("question"),
        "options": options,
        "answer_idx": row.get("answer_idx"),
        "answer": row.get("answer"),
        "meta": {k: row[k] for k in ("meta_info",) if row.get(k) is not None},
    }


def map_headqa(row: dict) -> dict:
    """head_qa / dvilares/head_qa (config ``en``): qid, qtext, ra (1-based answer id), answers[{aid, atext}]."""
    answers = row.get("answers") or []
    if isinstance(answers, dict):  # datasets may give a dict of lists
        answers = [dict(zip(answers, vals)) for vals in zip(*answers.values())]
    answers = sorted(answers, key=lambda a: a.get("aid", 0))
    options = {LETTERS[i]: a.get("atext") for i, a in enumerate(answers) if i < len(LETTERS)}
    aid_to_letter = {a.get("aid"): LETTERS[i] for i, a in enumerate(answers) if i < len(LETTERS)}
    idx = aid_to_letter.get(row.get("ra"))
    rid = None
    if row.get("qid") is not None:
        rid = f"{row.get('name', '')}-{row.get('qid')}".strip("-")
    return {
        "id": rid,
        "question": row.get("qtext"),
        "options": options,
        "answer_idx": idx,
        "answer": options.get(idx) if idx else None,
        "meta": {k: row[k] for k in ("category", "year") if row.get(k) is not None},
    }


def map_pubmedqa(row: dict) -> dict:
    """qiaojin/PubMedQA (``pqa_labeled``): pubid, question, context{contexts}, final_decision."""
    ctx = row.get("context") or {}
    contexts = ctx.get("contexts") if isinstance(ctx, dict) else ctx
    document = "\n".join(contexts or [])
    question = row.get("question")
    if question and document:
        question = f"{document}\n\n{PUBMEDQA_INSTRUCTION}\n{question}"
    options = {"A": "yes", "B": "no", "C": "maybe"}
    idx = {"yes": "A", "no": "B", "maybe": "C"}.get(str(row.get("final_decision", "")).strip().lower())
    return {
        "id": str(row["pubid"]) if row.get("pubid") is not None else None,
        "question": question,
        "options": options,
        "answer_idx": idx,
        "answer": options.get(idx) if idx else None,
    }


def map_items(row: dict) -> dict:
    """The project item layout, as is."""
    return dict(row)


# format -> (hub dataset id, config, split, mapper)
FORMATS: dict[str, tuple[str | None, str | None, str, Callable[[dict], dict]]] = {
    "medmcqa": ("openlifescienceai/medmcqa", None, "train", map_medmcqa),
    "medqa": ("GBaker/MedQA-USMLE-4-options", None, "train", map_medqa),
    "headqa": ("dvilares/head_qa", "en", "train", map_headqa),
    "pubmedqa": ("qiaojin/PubMedQA", "pqa_labeled", "train", map_pubmedqa),
    "items": (None, None, "train", map_items),
}

SOURCE_KEYS = {"format", "hub", "config", "split", "data_files", "path", "source", "limit", "id_prefix"}


def _stamp(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Collect(Stage):
    name = "collect"
    description = "load MedMCQA / MedQA / HeadQA / PubMedQA (hub or local files) into the item schema"
    defaults = {"sources": []}

    def validate(self) -> None:
        srcs = self.params["sources"]
        if not isinstance(srcs, list) or not srcs:
            raise StageError("collect: 'sources' must be a non-empty list")
        for n, s in enumerate(srcs):
            if not isinstance(s, dict):
                raise StageError(f"collect: source #{n + 1} must be a mapping")
            bad = set(s) - SOURCE_KEYS
            if bad:
                raise StageError(
                    f"collect: source #{n + 1}: unknown key(s) {sorted(bad)}; accepted: {sorted(SOURCE_KEYS)}"
                )
            fmt = s.get("format", "items" if "path" in s else None)
            if fmt not in FORMATS:
                raise StageError(f"collect: source #{n + 1}: format {fmt!r} is not one of {sorted(FORMATS)}")
            if fmt == "items" and "path" not in s:
                raise StageError(f"collect: source #{n + 1}: format 'items' needs 'path'")

    def fingerprint_extra(self) -> dict:
        stamps = []
        for s in self.params["sources"]:
            for key in ("path", "data_files"):
                files = s.get(key)
                for f in [files] if isinstance(files, str) else (files or []):
                    if os.path.exists(f):
                        stamps.append(_stamp(f))
        return {"files": stamps}

    def _rows(self, spec: dict) -> Iterable[dict]:
        fmt = spec.get("format", "items" if "path" in spec else None)
        hub, config, split, _ = FORMATS[fmt]
        if "path" in spec:
            path = spec["path"]
            if not os.path.exists(path):
                raise StageError(f"collect: {path}: no such file")
            if path.endswith((".jsonl", ".json")) and fmt == "items":
                yield from read_jsonl(path)
                return
            spec = {**spec, "data_files": path}
        import datasets

        split = spec.get("split", split)
        if spec.get("data_files"):
            files = spec["data_files"]
            first = files if isinstance(files, str) else files[0]
            builder = "parquet" if str(first).endswith(".parquet") else "json"
            ds = datasets.load_dataset(builder, data_files={split: files}, split=split)
        else:
            hub = spec.get("hub", hub)
            config = spec.get("config", config)
            try:
                ds = (
                    datasets.load_dataset(hub, config, split=split)
                    if config
                    else datasets.load_dataset(hub, split=split)
                )
            except Exception as exc:  # noqa: BLE001 - name the dataset in the error
                raise StageError(
                    f"collect: could not load {hub}" + (f" ({config})" if config else "") + f" split {split!r} "
                    f"from the Hugging Face Hub: {type(exc).__name__}: {exc}. Download it elsewhere and point "
                    f"'data_files' at a local copy."
                ) from exc
        yield from ds

    def run(self, ctx, items):
        out = list(items)  # collect may extend an upstream pool
        seen = {it.get("id") for it in out}
        per_source = ctx.report.setdefault("per_source", {})
        for spec in self.params["sources"]:
            fmt = spec.get("format", "items" if "path" in spec else None)
            mapper = FORMATS[fmt][3]
            source = spec.get("source") or (Path(spec["path"]).stem if fmt == "items" else fmt)
            prefix = spec.get("id_prefix", None if fmt == "items" else source)
            limit = spec.get("limit")
            kept = bad = 0
            for n, row in enumerate(ctx.progress(self._rows(spec), desc=f"{ctx.label}:{source}")):
                if limit is not None and n >= int(limit):
                    break
                item = mapper(dict(row))
                item["source"] = source
                if (
                    not item.get("answer")
                    and isinstance(item.get("options"), dict)
                    and item.get("answer_idx") in item["options"]
                ):
                    item["answer"] = item["options"][item["answer_idx"]]
                if item.get("id") in (None, ""):
                    item["id"] = f"{prefix or source}-{n:06d}"
                elif prefix and not str(item["id"]).startswith(f"{prefix}-"):
                    item["id"] = f"{prefix}-{item['id']}"
                else:
                    item["id"] = str(item["id"])
                if item["id"] in seen:
                    digest = hashlib.sha1(str(item.get("question")).encode()).hexdigest()[:8]
                    item["id"] = f"{item['id']}~{n}-{digest}"
                why = problems(item)
                if why:
                    ctx.reject(item, why[0], problems=why, source=source, row=n)
                    bad += 1
                    continue
                for k in ("question", "answer"):
                    item[k] = item[k].strip()
                item["options"] = {k: str(v).strip() for k, v in item["options"].items()}
                seen.add(item["id"])
                out.append(item)
                kept += 1
            per_source[source] = {"kept": kept, "rejected": bad}
        return out
