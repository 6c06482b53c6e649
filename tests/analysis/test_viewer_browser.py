"""The trace viewer in a real browser: Debian's chromium driven by Playwright (no skip: `make test`
installs chromium, and a missing chromium or playwright fails here)."""

import json

import pytest
from repo_paths import FIXTURES

from m1_harness.analysis import explain, viewer

pytestmark = pytest.mark.browser  # Debian's chromium through Playwright

RUNS = FIXTURES / "explain" / "runs"
THINK = "<|im_start|>think\n"
HURT = (
    {("org/m1-a", "medqa", d) for d in (4, 5, 11)}
    | {("org/m1-b", "medqa", d) for d in (3, 4)}
    | {("org/m1-a", "medbullets4", d) for d in (15, 18)}
)


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    explain.explain([RUNS], out)
    return out / "viewer.html"


@pytest.fixture(scope="module")
def pw():
    try:  # imported here, not at collection: the vLLM environment collects this file and deselects it
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is needed for the viewer's browser tests ({exc}): make test installs it (dev extra)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(html, pw):
    browser = viewer.launch_chromium(pw)
    pg = browser.new_page(viewport={"width": 1366, "height": 768})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: errors.append(f"network: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    pg.goto(html.as_uri())
    yield pg
    browser.close()
    assert errors == []  # no script errors, no network at all


def rows(page):
    out = []
    for r in page.locator("#list .row").all():
        task, doc_id = r.get_attribute("data-key").split("|")
        out.append((r.get_attribute("data-model"), task, int(doc_id)))
    return out


def open_row(page, doc_id, model):
    for sel in (
        "#filter-task",
        "#filter-model",
        "#filter-class",
        "#filter-outcome",
        "#filter-from",
        "#filter-to",
        "#filter-flip",
    ):
        page.select_option(sel, "")
    page.fill("#search", "")
    page.click(f'.row[data-key="medqa|{doc_id}"][data-model="{model}"]')


def text_before(page, mark_selector):
    """The trace text from its start up to a mark (labels are CSS-only, not text)."""
    return page.evaluate(
        """(sel) => {
        const mark = document.querySelector(sel);
        const r = document.createRange();
        r.setStart(mark.closest('.trace'), 0);
        r.setEndBefore(mark);
        return r.toString();
    }""",
        mark_selector,
    )


def test_filter_hurt_by_thinking_shows_exactly_those_rows(page):
    assert len(rows(page)) == 60 and page.inner_text("#count") == "60 of 60 (model, item) rows"
    page.select_option("#filter-class", "hurt by thinking")
    assert set(rows(page)) == HURT and len(rows(page)) == 7
    assert page.inner_text("#count") == "7 of 60 (model, item) rows"
    page.select_option("#filter-task", "medqa")
    page.select_option("#filter-model", "org/m1-b")
    assert rows(page) == [("org/m1-b", "medqa", 3), ("org/m1-b", "medqa", 4)]
    page.select_option("#filter-class", "")
    page.select_option("#filter-outcome", "wrong")  # wrong at budget 128
    assert [d for _, _, d in rows(page)] == [3, 4, 5, 7, 9]
    page.select_option("#filter-outcome", "")
    page.fill("#search", "item 7 b: consider")  # text of one trace only
    assert rows(page) == [("org/m1-b", "medqa", 7)]


def test_cut_marks_sit_after_exactly_that_many_thinking_tokens(page):
    # item 3 thinks 200 tokens in its first round: budgets 16, 64 and 128 all cut it
    open_row(page, 3, "org/m1-a")
    col = '#columns .col[data-model="org/m1-a"]'
    cuts = page.locator(f"{col} .trace span.cut")
    assert [(c.get_attribute("data-budget"), c.get_attribute("data-tokens")) for c in cuts.all()] == [
        ("16", "16"),
        ("64", "64"),
        ("128", "128"),
    ]
    before = text_before(page, f'{col} .trace span.cut[data-budget="64"]')
    script = explain_script(3, "a")
    # the scripted tokenizer has one token per character: 64 tokens are the first 64 characters
    assert before == THINK + script[:64]
    assert (
        page.locator(f"{col} .trace-head").last.inner_text()
        == "longest trace: budget 128, forcing 1 (128 thinking tokens)"
    )


def test_forced_wait_is_marked_where_it_was_spliced(page):
    # item 0 ends its first round after 10 tokens; forcing 1 splices "\nWait" there, then 30 more
    open_row(page, 0, "org/m1-a")
    col = '#columns .col[data-model="org/m1-a"]'
    forced = page.locator(f"{col} .trace mark.forced")
    assert forced.count() == 1 and forced.text_content() == "\nWait"
    assert forced.get_attribute("title") == "forced 'Wait' #1"
    assert text_before(page, f"{col} .trace mark.forced") == THINK + explain_script(0, "a")[:10]
    # budget 16 at forcing 1 cut it 1 token after the splice (10 + 5 + 1)
    assert (
        text_before(page, f'{col} .trace span.cut[data-budget="16"]')
        == THINK + explain_script(0, "a")[:10] + "\nWait" + "i"
    )
    assert (
        page.locator(f"{col} .trace .answer-part").text_content() == "\n<|im_start|>answer\nThe answer is \\boxed{A}."
    )


def test_settings_table_and_two_models_side_by_side(page):
    open_row(page, 1, "org/m1-a")
    col = '#columns .col[data-model="org/m1-a"]'
    cells = [
        [c.inner_text() for c in tr.locator("td").all()] for tr in page.locator(f"{col} table.settings tr").all()[1:]
    ]
    assert [c[:5] for c in cells] == [  # a box holding "42" names no option: nothing extracted
        ["budget 16, forcing 0", "16 (cut)", "-", "none", "wrong"],
        ["budget 16, forcing 1", "16 (cut)", "-", "none", "wrong"],
        ["budget 64, forcing 0", "40", "-", "none", "wrong"],
        ["budget 64, forcing 1", "64 (cut)", "-", "none", "wrong"],
        ["budget 128, forcing 0", "40", "-", "none", "wrong"],
        ["budget 128, forcing 1", "75", "-", "none", "wrong"],  # 40 + "\nWait" (5) + 30
    ]
    assert page.locator(".options li.gold").inner_text() == "B. Asthma"
    page.select_option("#compare", "org/m1-b")
    assert page.locator("#columns.two .col").count() == 2
    right = page.locator('#columns .col[data-model="org/m1-b"]')
    assert right.locator("h2 .badge").inner_text() == "helped by thinking"
    assert [td.inner_text() for td in right.locator("tr").last.locator("td").all()][:5] == [
        "budget 128, forcing 0",
        "40",
        "B",
        "boxed",
        "right",
    ]
    box = page.locator("#columns.two").bounding_box()
    cols = [page.locator(f'#columns .col[data-model="{m}"]').bounding_box() for m in ("org/m1-a", "org/m1-b")]
    assert (
        cols[0]["x"] < cols[1]["x"] and cols[0]["y"] == cols[1]["y"] and box["width"] <= 1366
    )  # side by side, on screen
    open_row(page, 3, "org/m1-a")  # right answers written as "The answer is D.": the regex rule
    last = page.locator(f"{col} table.settings tr").last.locator("td").all()
    assert [td.inner_text() for td in last][:5] == ["budget 128, forcing 1", "128 (cut)", "D", "regex", "right"]


def test_filter_items_that_flipped_between_two_chosen_settings(page, html):
    a, b = "budget 16, forcing 0", "budget 128, forcing 1"
    up = {("org/m1-a", "medqa", d) for d in (2, 3, 6, 10)} | {("org/m1-a", "medbullets4", d) for d in (*range(14), 19)}
    down = {("org/m1-a", "medqa", d) for d in (4, 5, 11)} | {("org/m1-a", "medbullets4", d) for d in (15, 18)}
    for t in json.loads((html.parent / "trajectories.json").read_text()):  # the same flips as explain's tables
        at = {s["setting"]: s["correct"] for s in t["settings"]}
        key = (t["model"], t["task"], t["doc_id"])
        assert (key in up, key in down) == (
            at.get(a) is False and at.get(b) is True,
            at.get(a) is True and at.get(b) is False,
        )
    open_row(page, 0, "org/m1-a")
    page.select_option("#filter-from", a)
    assert len(rows(page)) == 60  # one setting chosen: no filter yet
    page.select_option("#filter-to", b)
    assert set(rows(page)) == up | down and page.inner_text("#count") == "24 of 60 (model, item) rows"
    page.select_option("#filter-flip", "up")
    assert set(rows(page)) == up
    page.select_option("#filter-flip", "down")
    assert set(rows(page)) == down
    page.select_option("#filter-model", "org/m1-b")  # m1-b never ran forcing 1: nothing flips there
    assert rows(page) == [] and page.inner_text("#detail") == "No item matches the filters."


def test_cut_mark_is_a_visible_label(page):
    open_row(page, 3, "org/m1-a")
    cut = page.locator('#columns .col[data-model="org/m1-a"] .trace span.cut[data-budget="64"]')
    box = cut.bounding_box()
    assert box["width"] >= 60 and box["height"] >= 14  # "✂ budget 64" on a red label, not a 10px glyph
    after = page.evaluate(
        """(e) => { const s = getComputedStyle(e, '::after');
        return [s.content, s.backgroundColor, s.color, s.fontSize, s.fontWeight]; }""",
        cut.element_handle(),
    )
    assert after == ['"\u2702\u00a0budget\u00a064"', "rgb(208, 49, 45)", "rgb(255, 255, 255)", "11px", "600"]


def test_settled_budget_says_it_is_along_the_budget_axis(page):
    open_row(page, 1, "org/m1-a")  # wrong at budget 128: never settles
    col = '#columns .col[data-model="org/m1-a"]'
    assert (
        page.locator(f"{col} h2 .settle").inner_text()
        == "budget axis: never settles (wrong at some setting of the largest budget)"
    )
    open_row(page, 0, "org/m1-a")
    assert page.locator(f"{col} h2 .settle").inner_text() == "budget axis: right at every setting from budget 16 on"


def test_viewer_is_one_offline_file(html):
    text = html.read_text(encoding="utf-8")
    assert "<script src" not in text and "<link" not in text and "http://" not in text and "https://" not in text


def test_screenshot(html, pw, tmp_path):
    png = viewer.screenshot(
        html, tmp_path / "viewer.png", row="medqa|0@org/m1-a", compare="org/m1-b", size=(1280, 800), playwright=pw
    )
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (1280, 800)


def explain_script(doc_id, salt):
    """The fixture's thinking for one item: first round, as make_fixtures.py wrote it (from the records)."""
    rec = next(
        json.loads(line)
        for line in (RUNS / "m1-a" / "budget128_forcing0" / "traces.jsonl").open()
        if json.loads(line)["doc_id"] == doc_id
    )
    s, e = rec["thinking_span"]
    return rec["text"][s:e]
