"""What one item of an lm-eval task is, read from the ``doc`` lm-eval logs in its samples file: its
question, its options and its identity. Every join of analysis (runs against runs, samples against
trace records) pairs items by identity, never by lm-eval's positional ``doc_id``, which names another
question as soon as a data file gains, loses or reorders one item.
"""

from __future__ import annotations

import hashlib
import json

from m1_harness import records

# option fields of lm-eval's own medical tasks: medqa_4options (GBaker/MedQA), medmcqa
OPTION_FIELDS = (("ending0", "ending1", "ending2", "ending3"), ("opa", "opb", "opc", "opd"))
QUESTION_FIELDS = ("question", "sent1", "query", "prompt")


def options_of(doc: dict) -> dict | None:
    """The item's options as letter -> text (m1 tasks store two lists; lm-eval's own tasks vary)."""
    if isinstance(doc.get("letters"), list) and isinstance(doc.get("choices"), list):
        return dict(zip(doc["letters"], doc["choices"]))
    if isinstance(doc.get("options"), dict):
        return {str(k): str(v) for k, v in doc["options"].items()}
    for keys in OPTION_FIELDS:
        if all(k in doc for k in keys):
            return {chr(65 + i): str(doc[k]) for i, k in enumerate(keys)}
    choices = doc.get("choices") or doc.get("options")
    if isinstance(choices, dict) and isinstance(choices.get("text"), list):
        choices = choices["text"]
    if isinstance(choices, list) and choices:
        return {chr(65 + i): str(c) for i, c in enumerate(choices)}
    return None


def question_of(doc: dict) -> str:
    """The question text ("" when the task names it otherwise)."""
    return str(next((doc[k] for k in QUESTION_FIELDS if doc.get(k)), ""))


def item_hash(doc: dict) -> str:
    """16 hex digits of SHA-256 over the question and the options (letter, text) in order, each stripped;
    over the whole doc when it has neither. The same question with the same options is the same item in
    any file (records.item_hash: the digest trace records carry)."""
    question, options = question_of(doc), options_of(doc)
    if question or options:
        return records.item_hash(question, options or {})  # the digest has one home: the trace records'
    blob = json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def item_key(doc: dict) -> str:
    """The item's identity as one string: its own ``id`` (when the data gives one) and its hash."""
    own = doc.get("id")
    return f"{own}#{item_hash(doc)}" if own not in (None, "") else item_hash(doc)


def keyed_by_item(docs) -> list[str]:
    """One identity per doc, in order; a repeated item (the same question twice in one file) gets
    ``~2``, ``~3`` ... so each occurrence pairs with the same occurrence elsewhere."""
    seen: dict[str, int] = {}
    out = []
    for doc in docs:
        key = item_key(doc)
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}~{seen[key]}")
    return out
