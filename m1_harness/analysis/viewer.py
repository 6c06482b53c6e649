"""The trace viewer of ``m1-harness explain``: one self-contained HTML file (data, CSS and script
inline; no server, no network), written beside the tables.

Each (model, task, item) is a row; an item shows its question, options and gold answer, the model's
longest trace with a mark where each budget cut it and each forcing string spliced in, and for every
setting the answer, the extracted letter, how it was extracted and right or wrong; a second model
can be shown beside it. The list filters by task, model, class, right/wrong at the largest setting,
and by the items that flipped between two chosen settings (``settings``: every setting's label,
least thinking first). Marks come from m1_budget's trace records (``thinking_span``,
``forced_spans``: character offsets in the trace text), so no tokenizer is needed: a setting's
cut lies in the longest trace wherever its thinking is a prefix of the longest one's (as under
greedy decoding), and is left out, with a note, where it is not.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .items import options_of, question_of
from .outcomes import CLASSES, by_model_task
from .results import sortable

TEMPLATE = "viewer.html"
PLACEHOLDER = "/*M1_DATA*/null"


def _thinking(o) -> str | None:
    rec = o.record or {}
    span = rec.get("thinking_span")
    return rec.get("text", o.text)[span[0] : span[1]] if span else None


def longest_trace(group, doc_id) -> dict:
    """The model's longest trace of an item with its marks (cuts and forced splices)."""
    have = [r for r in group if doc_id in r.outcomes]
    traced = [r for r in have if (r.outcomes[doc_id].record or {}).get("thinking_span")]
    if not traced:  # lm-eval's own runs, or trace records without character spans: the text alone
        r = have[-1]
        return {
            "setting": r.label,
            "text": r.outcomes[doc_id].text,
            "thinking": None,
            "cuts": [],
            "forced": [],
            "note": "no m1_budget trace records with character spans: no marks",
        }
    longest = max(traced, key=lambda r: (r.outcomes[doc_id].thinking_tokens or 0, r.key))
    lo = longest.outcomes[doc_id]
    rec = lo.record
    text, span = rec.get("text", lo.text), rec["thinking_span"]
    thinking = text[span[0] : span[1]]
    cuts, skipped = {}, []
    for r in traced:
        o = r.outcomes[doc_id]
        if not o.hit_budget:
            continue
        mine = _thinking(o)
        if thinking.startswith(mine):
            cuts.setdefault((r.budget, span[0] + len(mine)), []).append(r)
        else:
            skipped.append(r.label)
    forcing_str = rec.get("forcing_str", "Wait")
    return {
        "setting": longest.label,
        "text": text,
        "thinking": span,
        "thinking_tokens": lo.thinking_tokens,
        "cuts": [
            {"at": at, "budget": b, "tokens": rs[0].outcomes[doc_id].thinking_tokens, "settings": [r.label for r in rs]}
            for (b, at), rs in sorted(cuts.items(), key=lambda kv: (kv[0][1], sortable(kv[0][0])))
        ],
        "forced": [
            {"start": s, "end": e, "label": f"forced {forcing_str!r} #{i + 1}"}
            for i, (s, e) in enumerate(rec.get("forced_spans") or [])
        ],
        "note": f"thinking of {', '.join(skipped)} is not a prefix of this trace: its cut is not marked"
        if skipped
        else "",
    }


def viewer_data(runs, trajectories: list[dict]) -> dict:
    groups = by_model_task(runs)
    items, rows = {}, []
    for t in trajectories:
        group = groups[t["model"], t["task"]]
        key = f"{t['task']}|{t['doc_id']}"
        if key not in items:
            doc, gold = next(r.docs[t["doc_id"]] for r in group if t["doc_id"] in r.docs)
            options = options_of(doc) or {}
            items[key] = {
                "task": t["task"],
                "doc_id": t["doc_id"],
                "item": str(t["item"]),
                "gold": gold,
                "question": question_of(doc),
                "options": [[k, v] for k, v in options.items()],
            }
        settings = []
        for r in group:
            o = r.outcomes.get(t["doc_id"])
            if o is not None:
                settings.append(
                    {
                        "setting": r.label,
                        "letter": o.letter,
                        "method": o.method,
                        "correct": o.correct,
                        "answer": o.answer,
                        "thinking_tokens": o.thinking_tokens,
                        "hit_budget": o.hit_budget,
                    }
                )
        rows.append(
            {
                "model": t["model"],
                "task": t["task"],
                "key": key,
                "class": t["class"],
                "settled_budget": t["settled_budget"],
                "final_correct": settings[-1]["correct"],
                "settings": settings,
                "trace": longest_trace(group, t["doc_id"]),
            }
        )
    rows.sort(key=lambda r: (r["task"], sortable(items[r["key"]]["doc_id"]), r["model"]))  # an item's models together
    labels = {
        (sortable(r.budget), sortable(r.forcing)): r.label for r in runs
    }  # the flip filter's settings, least thinking first
    return {"classes": list(CLASSES), "items": items, "rows": rows, "settings": [labels[k] for k in sorted(labels)]}


def render(data: dict) -> str:
    template = resources.files("m1_harness.analysis").joinpath(TEMPLATE).read_text(encoding="utf-8")
    # JSON inside <script>: "</" must not close the element, and U+2028/9 must not end a JS line
    blob = (
        json.dumps(data, ensure_ascii=False)
        .replace("</", "<\\/")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return template.replace(PLACEHOLDER, blob)


def write_viewer(runs, trajectories: list[dict], path: Path) -> Path:
    path.write_text(render(viewer_data(runs, trajectories)), encoding="utf-8")
    return path


def launch_chromium(playwright):
    """Debian's chromium through Playwright (Playwright's own browser download is not used)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise RuntimeError("no chromium on PATH: install it (Debian: apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=exe, args=["--no-sandbox"])


def screenshot(
    html: Path,
    png: Path,
    *,
    row: str | None = None,
    compare: str | None = None,
    size: tuple[int, int] = (1440, 900),
    playwright=None,
) -> Path:
    """A PNG of the viewer in a laptop-sized window, with a row opened (``"<task>|<doc_id>@<model>"``)
    and another model beside it: how docs/explain.md's picture is made. ``playwright``: a running sync
    Playwright to reuse (one per thread)."""
    if playwright is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            return screenshot(html, png, row=row, compare=compare, size=size, playwright=p)
    browser = launch_chromium(playwright)
    try:
        page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        page.goto(Path(html).resolve().as_uri())
        if row:
            key, _, model = row.partition("@")
            page.click(f'.row[data-key="{key}"]' + (f'[data-model="{model}"]' if model else ""))
        if compare:
            page.select_option("#compare", compare)
        page.screenshot(path=str(png))
    finally:
        browser.close()
    return Path(png)
