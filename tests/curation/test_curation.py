"""Curation framework and the local stages: collect, dedup, decontaminate, sample, format."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from repo_paths import REPO, SHARED_TRAIN

from m1_harness.curation import Drop, Reject, Stage, StageError, load_recipe, neardup, run_recipe
from m1_harness.curation.collect import map_headqa, map_medmcqa, map_medqa, map_pubmedqa
from m1_harness.curation.items import normalise, read_jsonl
from m1_harness.curation.plugin import builtin_stages
from m1_harness.curation.sample import sample_indices
from m1_harness.prompts import sft_completion as completion_text

TRAIN = SHARED_TRAIN / "huatuogpt_o1_demo_sft.jsonl"


@pytest.fixture(scope="module")
def train_items():
    if not TRAIN.is_file():
        pytest.fail(f"the 198-item training sample is needed at {TRAIN}")
    return list(read_jsonl(TRAIN))


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(recipe, tmp_path, **kw):
    return run_recipe(
        recipe, workdir=tmp_path / "work", registry=builtin_stages(), show_progress=False, log=lambda m: None, **kw
    )


def _items(stage_dir: Path, name="items.jsonl"):
    return list(read_jsonl(stage_dir / name))


# ----------------------------------------------------------------------------------------------
# plugin registration and recipes


def test_plugin_registers_every_stage_through_the_hook():
    import pluggy

    from m1_harness import PROJECT_NAME, hookspecs
    from m1_harness.curation import plugin

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    got = {}
    pm.hook.m1_register_stages(register=lambda name, stage: got.setdefault(name, stage))
    expected = {"collect", "dedup", "decontaminate", "difficulty", "distill", "verify", "domain", "sample", "format"}
    assert expected <= set(got)
    assert all(issubclass(s, Stage) for s in got.values())


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(StageError, match="unknown curation stage 'nope'"):
        _run({"stages": [{"nope": {}}]}, tmp_path)
    with pytest.raises(StageError, match="unknown parameter.*bogus"):
        _run({"stages": [{"dedup": {"bogus": 1}}]}, tmp_path)
    with pytest.raises(StageError, match="labels must be unique"):
        load_recipe({"workdir": "x", "stages": ["dedup", "dedup"]})
    r = load_recipe(
        {"workdir": "x", "stages": [{"stage": "dedup", "label": "d1", "params": {"threshold": 90}}, "sample"]}
    )
    assert [(s.stage, s.label, s.params) for s in r.stages] == [
        ("dedup", "d1", {"threshold": 90}),
        ("sample", "sample", {}),
    ]


# ----------------------------------------------------------------------------------------------
# collect


def test_collect_maps_the_four_hub_layouts_from_local_files(tmp_path, train_items):
    medmcqa = _write(
        tmp_path / "medmcqa.jsonl",
        [
            {
                "id": "m1",
                "question": "Q one?",
                "opa": "a",
                "opb": "b",
                "opc": "c",
                "opd": "d",
                "cop": 2,
                "subject_name": "Anatomy",
            },
            {"id": "m2", "question": "Q two?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 7},  # bad answer
            {"id": "m3", "question": "", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0},  # no question
        ],
    )
    medqa = _write(
        tmp_path / "medqa.jsonl",
        [
            {
                "question": "A 30-year-old...?",
                "options": {"A": "x", "B": "y", "C": "z", "D": "w"},
                "answer_idx": "B",
                "answer": "y",
            },
            {"question": "Mismatch?", "options": {"A": "x", "B": "y"}, "answer_idx": "F", "answer": "q"},
        ],
    )
    headqa = _write(
        tmp_path / "headqa.jsonl",
        [
            {
                "name": "Cuaderno_2013_1_B",
                "year": "2013",
                "category": "biology",
                "qid": 1,
                "qtext": "Which enzyme?",
                "ra": 3,
                "answers": [
                    {"aid": 1, "atext": "p"},
                    {"aid": 2, "atext": "q"},
                    {"aid": 3, "atext": "r"},
                    {"aid": 4, "atext": "s"},
                ],
            },
        ],
    )
    pubmedqa = _write(
        tmp_path / "pubmedqa.jsonl",
        [
            {
                "pubid": 123,
                "question": "Does X cause Y?",
                "context": {"contexts": ["Background.", "Results."]},
                "long_answer": "...",
                "final_decision": "maybe",
            },
        ],
    )
    local = _write(tmp_path / "local.jsonl", train_items[:5])
    recipe = {
        "stages": [
            {
                "collect": {
                    "sources": [
                        {"format": "medmcqa", "data_files": str(medmcqa)},
                        {"format": "medqa", "data_files": str(medqa)},
                        {"format": "headqa", "data_files": str(headqa)},
                        {"format": "pubmedqa", "data_files": str(pubmedqa)},
                        {"path": str(local), "source": "huatuo"},
                    ]
                }
            }
        ]
    }
    res = _run(recipe, tmp_path)
    out = _items(res.stages[0].dir)
    by_source = Counter(it["source"] for it in out)
    assert by_source == {"medmcqa": 1, "medqa": 1, "headqa": 1, "pubmedqa": 1, "huatuo": 5}
    m = next(it for it in out if it["source"] == "medmcqa")
    assert (m["id"], m["answer_idx"], m["answer"], m["options"]["D"]) == ("medmcqa-m1", "C", "c", "d")
    h = next(it for it in out if it["source"] == "headqa")
    assert (h["answer_idx"], h["answer"]) == ("C", "r")
    p = next(it for it in out if it["source"] == "pubmedqa")
    assert (
        p["answer_idx"] == "C"
        and p["question"].startswith("Background.\nResults.\n\n")
        and p["question"].endswith("Does X cause Y?")
    )
    rejected = _items(res.stages[0].dir, "rejected.jsonl")
    assert sorted(r["id"] for r in rejected) == ["medmcqa-m2", "medmcqa-m3", "medqa-000001"]
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons["medmcqa-m2"] == "missing_answer" or reasons["medmcqa-m2"].startswith("unknown_answer_letter")
    assert reasons["medqa-000001"].startswith("unknown_answer_letter")
    done = json.loads((res.stages[0].dir / "_done.json").read_text())
    assert done["counts"]["out"] == 9 and done["counts"]["rejected"] == 3


def test_mappers_handle_dict_of_lists_and_string_answers():
    row = {"qid": 5, "name": "n", "qtext": "Q?", "ra": 2, "answers": {"aid": [2, 1], "atext": ["two", "one"]}}
    assert map_headqa(row)["answer_idx"] == "B" and map_headqa(row)["options"] == {"A": "one", "B": "two"}
    assert map_medmcqa({"question": "q", "opa": "1", "opb": "2", "opc": "3", "opd": "4", "cop": 3})["answer"] == "4"
    assert map_medqa({"question": "q", "options": [{"key": "A", "value": "v"}], "answer_idx": "A", "answer": "v"})[
        "options"
    ] == {"A": "v"}
    assert (
        map_pubmedqa({"pubid": 1, "question": "q", "context": {"contexts": []}, "final_decision": "no"})["question"]
        == "q"
    )


def test_collect_hub_failure_names_the_dataset(tmp_path, monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(StageError, match="openlifescienceai/medmcqa.*data_files"):
        _run({"stages": [{"collect": {"sources": [{"format": "medmcqa"}]}}]}, tmp_path)


# ----------------------------------------------------------------------------------------------
# dedup


def _typos(text: str, rng: random.Random, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        op = rng.randrange(3)
        pos = rng.randrange(len(chars))
        if op == 0:
            chars[pos] = rng.choice("abcdefghijklmnopqrstuvwxyz")
        elif op == 1 and len(chars) > 10:
            del chars[pos]
        else:
            chars.insert(pos, rng.choice("abcdefghijklmnopqrstuvwxyz"))
    return "".join(chars)


def _near_duplicate(text: str, rng: random.Random) -> str:
    """The kinds of near-duplicates source datasets contain, some above and some below ratio 95."""
    words = text.split()
    kind = rng.randrange(6)
    if kind == 0:  # punctuation / case / spacing only (identical once normalised)
        return text.upper().replace(" ", "  ") + " ?"
    if kind == 1:
        return _typos(text, rng, 1)
    if kind == 2:
        return _typos(text, rng, 2 if len(text) > 80 else 1)
    if kind == 3 and len(words) > 3:  # one word replaced
        words[rng.randrange(len(words))] = rng.choice(["acute", "chronic", "left", "right", "male", "female"])
        return " ".join(words)
    if kind == 4 and len(words) > 3:  # one word dropped
        del words[rng.randrange(len(words))]
        return " ".join(words)
    return _typos(text, rng, max(3, len(text) // 6))  # a heavy rewrite: well below the threshold


def _corpus(train_items, eval_data_dir):
    base = [normalise(it["question"]) for it in train_items]
    return base + [normalise(it["question"]) for it in read_jsonl(eval_data_dir / "medmcqa.jsonl")][:300]


def test_lsh_dedup_equals_exact_pairwise_on_real_items_and_their_near_duplicates(train_items, eval_data_dir):
    rng = random.Random(7)
    base = _corpus(train_items, eval_data_dir)
    texts = list(base) + [_near_duplicate(t, rng) for t in base[:400]] + base[:20]
    rng.shuffle(texts)
    lsh, stats = neardup.find_duplicates(texts, method="lsh")
    exact, _ = neardup.find_duplicates(texts, method="exact")
    assert set(lsh) == set(exact)
    assert {k: v[0] for k, v in lsh.items()} == {k: v[0] for k, v in exact.items()}
    assert all(abs(lsh[k][1] - exact[k][1]) < 1e-6 for k in lsh)
    assert 200 < len(exact) < 400  # the near-duplicates really straddle the threshold
    assert stats["candidate_pairs"] < len(texts) * 5  # far fewer than n^2 / 2 comparisons
    # the quadratic reference agrees with a plain double loop
    from rapidfuzz import fuzz

    small = texts[:120]
    brute = {
        (i, j) for i in range(len(small)) for j in range(i + 1, len(small)) if fuzz.ratio(small[i], small[j]) >= 95
    }
    assert {(i, j) for i, j, _ in neardup.exact_pairs(small, small, 95, same=True)} == brute


def test_lsh_recall_at_the_edge_of_the_threshold_is_measured(train_items, eval_data_dir):
    """Adversarial pairs: edits spread evenly, ratio just above 95 (the weakest case for LSH).
    Recall there is probabilistic (docstring of neardup); more bands buy it back."""
    from rapidfuzz import fuzz

    rng = random.Random(3)
    pairs = []
    for t in _corpus(train_items, eval_data_dir):
        for _ in range(30):
            u = _typos(t, rng, rng.randint(max(1, len(t) // 60), max(2, len(t) // 20)))
            if 95 <= fuzz.ratio(t, u) < 97:
                pairs.append((t, u))
                break
    assert len(pairs) > 200

    def recall(**kw):
        texts = [x for p in pairs for x in p]
        found, _ = neardup.find_duplicates(texts, method="lsh", **kw)
        return sum(2 * i + 1 in found for i in range(len(pairs))) / len(pairs)

    default, wide = recall(), recall(bands=32, rows=4)
    print(f"edge recall: default {default:.3f}, 32x4 bands {wide:.3f}")
    assert default >= 0.9 and wide >= 0.99


def test_dedup_stage_reports_what_it_dropped(tmp_path, train_items):
    items = [dict(it) for it in train_items[:40]]
    dup = dict(items[3], id="copy-of-3", question=items[3]["question"].upper() + " ")
    near = dict(items[5], id="near-5", question=items[5]["question"].replace("the", "teh", 1))
    pool = _write(tmp_path / "pool.jsonl", items + [dup, near])
    res = _run(
        {"stages": [{"collect": {"sources": [{"path": str(pool), "source": "s", "id_prefix": ""}]}}, "dedup"]}, tmp_path
    )
    dropped = _items(res.stages[1].dir, "dropped.jsonl")
    assert {(d["id"], d["duplicate_of"]) for d in dropped} == {
        ("copy-of-3", items[3]["id"]),
        ("near-5", items[5]["id"]),
    }
    assert all(d["reason"] == "duplicate" and d["score"] >= 95 for d in dropped)
    assert res.stages[1].counts == {"in": 42, "out": 40, "dropped": 2, "rejected": 0}


# ----------------------------------------------------------------------------------------------
# decontaminate


def test_decontaminate_fuzzy_and_ngram_per_eval_set(tmp_path, train_items, eval_data_dir):
    medqa = list(read_jsonl(eval_data_dir / "medqa.jsonl"))[:50]
    pubmed = list(read_jsonl(eval_data_dir / "pubmedqa.jsonl"))[:50]
    pool = [dict(it) for it in train_items[:60]]
    leak_fuzzy = dict(medqa[10], id="leak-fuzzy", question=medqa[10]["question"].replace(".", ";", 2), source="x")
    # an eval question embedded in a longer text: ratio < 95, but it holds all its 13-grams
    leak_ngram = dict(
        pubmed[3],
        id="leak-ngram",
        question="Background, paraphrased at length. " * 30 + pubmed[3]["question"],
        source="x",
    )
    # sharing a little boilerplate (a vital-signs 13-gram) is not contamination
    assert "huatuo_demo-0000" in {it["id"] for it in pool}
    pool += [leak_fuzzy, leak_ngram]
    pool_file = _write(tmp_path / "pool.jsonl", pool)
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool_file), "source": "mixed", "id_prefix": ""}]}},
            {
                "decontaminate": {
                    "eval_sets": [str(eval_data_dir / "medqa.jsonl"), str(eval_data_dir / "pubmedqa.jsonl")],
                    "limit_per_set": 50,
                }
            },
        ]
    }
    res = _run(recipe, tmp_path)
    dropped = {d["id"]: d for d in _items(res.stages[1].dir, "dropped.jsonl")}
    assert set(dropped) == {"leak-fuzzy", "leak-ngram"}
    assert (dropped["leak-fuzzy"]["method"], dropped["leak-fuzzy"]["eval_set"], dropped["leak-fuzzy"]["eval_id"]) == (
        "fuzzy",
        "medqa",
        medqa[10]["id"],
    )
    assert (dropped["leak-ngram"]["method"], dropped["leak-ngram"]["eval_set"]) == ("ngram", "pubmedqa")
    report = json.loads((res.stages[1].dir / "_done.json").read_text())["report"]["per_eval_set"]
    assert report["medqa"]["contaminated"] == 1 and report["pubmedqa"]["contaminated"] == 1
    assert report["medqa"]["eval_items"] == 50


def test_decontaminate_defaults_to_the_data_directory(tmp_path, train_items, eval_data_dir):
    pool_file = _write(tmp_path / "pool.jsonl", train_items[:30])
    recipe = {
        "stages": [{"collect": {"sources": [{"path": str(pool_file)}]}}, {"decontaminate": {"limit_per_set": 20}}]
    }
    res = _run(recipe, tmp_path)
    report = json.loads((res.stages[1].dir / "_done.json").read_text())["report"]
    assert {"medqa", "medmcqa", "pubmedqa"} <= set(report["per_eval_set"])


# ----------------------------------------------------------------------------------------------
# sample and format


def _pool(n_domains=4, sizes=(200, 20, 5, 60), sources=("medmcqa", "medqa", "headqa")):
    items = []
    for d, size in zip(range(n_domains), sizes):
        for k in range(size):
            items.append(
                {
                    "id": f"d{d}-{k}",
                    "domain": f"D{d}",
                    "source": sources[(k * 7 + d) % len(sources)] if k % 10 else "pubmedqa",
                    "hard": k % 3 != 0,
                }
            )
    return items


def test_diversity_sampling_is_domain_uniform_seeded_and_without_replacement():
    items = _pool()
    a = sample_indices(items, 60, "diversity", 3)
    assert a == sample_indices(items, 60, "diversity", 3)
    assert a != sample_indices(items, 60, "diversity", 4)
    assert len(set(a)) == 60
    assert all(items[i]["hard"] for i in a)
    by_domain = Counter(items[i]["domain"] for i in a)
    # uniform over domains until one runs out: D2 has only 3 hard items
    assert by_domain["D2"] == 3 and min(by_domain["D0"], by_domain["D1"], by_domain["D3"]) >= 12
    # within a domain, sources are drawn uniformly: the rare pubmedqa items are overrepresented
    d0 = [i for i in a if items[i]["domain"] == "D0"]
    assert Counter(items[i]["source"] for i in d0)["pubmedqa"] >= 2
    # asking for more than exists takes everything eligible
    assert len(sample_indices(items, 10_000, "diversity", 0)) == sum(it["hard"] for it in items)


def test_sampling_variants():
    items = _pool()
    r = sample_indices(items, 100, "random", 1)
    assert any(not items[i]["hard"] for i in r)
    hr = sample_indices(items, 100, "hard_random", 1)
    assert all(items[i]["hard"] for i in hr)
    hd = sample_indices(items, 40, "hard_domain", 1)
    assert Counter(items[i]["domain"] for i in hd)["D2"] == 3


def test_sample_and_format_stages(tmp_path, train_items):
    items = []
    for k, it in enumerate(train_items[:30]):
        items.append(
            {
                **it,
                "domain": ["Diagnosis", "Drug Therapy", "Pathology"][k % 3],
                "teacher": {"reasoning": f"Think {k}.", "answer": f"The answer is \\boxed{{{it['answer_idx']}}}."},
            }
        )
    items[4]["teacher"] = {}
    pool = _write(tmp_path / "pool.jsonl", items)
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool), "id_prefix": ""}]}},
            {"sample": {"n": 12, "seed": 1}},
            "format",
        ]
    }
    res = _run(recipe, tmp_path)
    sampled = _items(res.stages[1].dir)
    assert len(sampled) == 12 and set(Counter(it["domain"] for it in sampled)) == {
        "Diagnosis",
        "Drug Therapy",
        "Pathology",
    }
    assert len(_items(res.stages[1].dir, "dropped.jsonl")) == 18
    recs = {r["id"]: r for r in _items(res.stages[2].dir)}
    first = sampled[0] if sampled[0]["teacher"] else sampled[1]
    rec = recs[first["id"]]
    assert rec["prompt"] == first["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in first["options"].items())
    assert rec["completion"] == (
        f"<|im_start|>think\n{first['teacher']['reasoning']}\n<|im_start|>answer\n"
        f"Answer: {first['teacher']['answer']}<|im_end|>"
    )
    if items[4]["id"] in {s["id"] for s in sampled}:
        assert [r["id"] for r in _items(res.stages[2].dir, "rejected.jsonl")] == [items[4]["id"]]
    assert completion_text("r", "Answer: B") == "<|im_start|>think\nr\n<|im_start|>answer\nAnswer: B<|im_end|>"


# ----------------------------------------------------------------------------------------------
# resuming


class Flaky(Stage):
    """A per-item test stage: drops odd numbers, rejects multiples of 5, crashes once at item K."""

    name = "flaky"
    per_item = True
    defaults = {"crash_at": None, "log": None, "concurrency": 1}

    def process(self, ctx, item):
        n = int(item["id"].split("-")[-1])
        with open(self.params["log"], "a") as fh:
            fh.write(item["id"] + "\n")
        if (
            self.params["crash_at"] is not None
            and n == self.params["crash_at"]
            and not Path(self.params["log"] + ".crashed").exists()
        ):
            Path(self.params["log"] + ".crashed").write_text("x")
            raise KeyboardInterrupt  # like Ctrl-C: aborts the run
        if n % 5 == 0:
            raise Reject("multiple_of_five")
        if n % 2:
            raise Drop("odd")
        return {**item, "seen": True}


@pytest.mark.parametrize("concurrency", [1, 4])
def test_per_item_stage_resumes_after_a_crash_without_redoing_items(tmp_path, train_items, concurrency):
    pool = _write(tmp_path / "pool.jsonl", [{**it, "id": f"x-{k}"} for k, it in enumerate(train_items[:40])])
    log = tmp_path / "calls.log"
    recipe = {
        "stages": [
            {"collect": {"sources": [{"path": str(pool), "id_prefix": "x"}]}},
            {"flaky": {"crash_at": 17, "log": str(log), "concurrency": concurrency}},
        ]
    }
    registry = {**builtin_stages(), "flaky": Flaky}
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, workdir=tmp_path / "w", registry=registry, show_progress=False, log=lambda m: None)
    res = run_recipe(recipe, workdir=tmp_path / "w", registry=registry, show_progress=False, log=lambda m: None)
    calls = Counter(log.read_text().split())
    assert set(calls) == {f"x-{k}" for k in range(40)}
    # only the crashing item (and, with threads, items in flight at the crash) run twice
    assert sum(c > 1 for c in calls.values()) <= concurrency
    assert calls["x-17"] == 2
    st = res.stages[1]
    assert st.counts == {"in": 40, "out": 16, "dropped": 16, "rejected": 8}
    assert json.loads((st.dir / "_done.json").read_text())["resumed_items"] >= 17 - concurrency
    assert [it["id"] for it in _items(st.dir)] == [f"x-{k}" for k in range(40) if k % 2 == 0 and k % 5]
    # a third run skips both stages entirely
    before = log.read_text()
    res = run_recipe(recipe, workdir=tmp_path / "w", registry=registry, show_progress=False, log=lambda m: None)
    assert all(s.skipped for s in res.stages) and log.read_text() == before


def test_finished_stages_are_skipped_and_param_changes_redo_downstream(tmp_path, train_items):
    pool = _write(tmp_path / "pool.jsonl", train_items[:30])

    def recipe(th):
        return {
            "stages": [
                {"collect": {"sources": [{"path": str(pool)}]}},
                {"dedup": {"threshold": th}},
                {"sample": {"n": 5}},
            ]
        }

    r1 = _run(recipe(95), tmp_path)
    assert not any(s.skipped for s in r1.stages)
    r2 = _run(recipe(95), tmp_path)
    assert all(s.skipped for s in r2.stages)
    r3 = _run(recipe(90), tmp_path)
    assert [s.skipped for s in r3.stages] == [True, False, False]
    r4 = _run(recipe(90), tmp_path, from_stage="sample")
    assert [s.skipped for s in r4.stages] == [True, True, False]
    # touching an input file invalidates collect
    import os

    st = pool.stat()
    os.utime(pool, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert [s.skipped for s in _run(recipe(90), tmp_path).stages] == [False, False, False]


# The shipped recipes and the pipeline each runs: a recipe added, removed or reordered must show here.
M1K_PIPELINE = ["collect", "dedup", "decontaminate", "difficulty", "distill", "verify", "domain", "sample", "format"]
RECIPES = {"demo_local.yaml": M1K_PIPELINE, "m1k.yaml": M1K_PIPELINE}


def test_example_recipes_parse_and_their_stages_accept_the_params(monkeypatch):
    """Each shipped recipe loads, runs the expected stages in order, and every stage is built from its
    params with the $VARs filled in; an empty (or renamed) recipe folder fails instead of passing."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "unused")
    monkeypatch.setenv("TEACHER_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("M1_HARNESS_DATA", "/eval-sets")
    folder = REPO / "plugins" / "recipes"
    assert sorted(p.name for p in folder.glob("*.yaml")) == sorted(RECIPES), f"the recipes in {folder}"
    registry = builtin_stages()
    for name, pipeline in RECIPES.items():
        recipe = load_recipe(folder / name)
        assert [spec.stage for spec in recipe.stages] == pipeline, name
        stages = {spec.stage: registry[spec.stage](**spec.params) for spec in recipe.stages}
        assert all(stage.name == key for key, stage in stages.items()), name
        assert stages["decontaminate"].params["eval_sets"] == "/eval-sets", name
        urls = [stages["distill"].params["base_url"], stages["domain"].params["base_url"]]
        urls += [m["base_url"] for m in stages["difficulty"].params["models"]]
        assert all(url.startswith(("http://", "https://")) for url in urls), (name, urls)
        if name == "demo_local.yaml":
            assert set(urls) == {"http://127.0.0.1:1/v1"}, urls  # $TEACHER_URL, expanded


def test_cli_lists_stages_and_runs_a_recipe(tmp_path, train_items, isolated_plugins, monkeypatch, capsys):
    import yaml

    from m1_harness.cli import main

    if "m1_harness.curation.plugin" not in isolated_plugins.DEFAULT_PLUGINS:
        monkeypatch.setattr(
            isolated_plugins, "DEFAULT_PLUGINS", isolated_plugins.DEFAULT_PLUGINS + ("m1_harness.curation.plugin",)
        )
    assert main(["curate", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("collect", "dedup", "decontaminate", "difficulty", "distill", "verify", "domain", "sample", "format"):
        assert f"{name}: " in listed
    pool = _write(tmp_path / "pool.jsonl", train_items[:12])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "workdir": str(tmp_path / "w"),
                "stages": [{"collect": {"sources": [{"path": str(pool)}]}}, "dedup", {"sample": {"n": 5}}],
            }
        )
    )
    summary = tmp_path / "s.json"
    assert main(["curate", str(recipe), "--no-progress", "--summary-json", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "output:" in out and json.loads(summary.read_text())["stages"][-1]["out"] == 5
    assert main(["curate", str(recipe), "--no-progress"]) == 0
    assert "(finished before)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"workdir": str(tmp_path / "w"), "stages": [{"dedup": {"nope": 1}}]}))
    assert main(["curate", str(bad)]) == 1
    assert "unknown parameter" in capsys.readouterr().err


def test_format_renders_the_prompt_with_a_tokenizer_chat_template(tmp_path, train_items, tiny_model):
    items = [{**it, "teacher": {"reasoning": "R.", "answer": "\\boxed{A}"}} for it in train_items[:2]]
    pool = _write(tmp_path / "pool.jsonl", items)
    res = _run(
        {
            "stages": [
                {"collect": {"sources": [{"path": str(pool)}]}},
                {"format": {"tokenizer": str(tiny_model), "answer": "gold"}},
            ]
        },
        tmp_path,
    )
    rec = _items(res.stages[1].dir)[0]
    assert rec["prompt"].startswith("<|im_start|>user\n" + items[0]["question"])
    assert rec["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n")
    gold = f"{items[0]['answer_idx']}. {items[0]['answer']}"
    assert rec["completion"] == f"<|im_start|>think\nR.\n<|im_start|>answer\nAnswer: {gold}<|im_end|>"


def test_format_refuses_a_tokenizer_without_chat_template_before_the_first_item(tmp_path, train_items, tiny_model):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    pool = _write(
        tmp_path / "pool.jsonl", [{**it, "teacher": {"reasoning": "R.", "answer": "A"}} for it in train_items[:2]]
    )
    with pytest.raises(StageError, match=f"format: tokenizer='{plain}': the tokenizer of .*plain has no chat template"):
        _run(
            {"stages": [{"collect": {"sources": [{"path": str(pool)}]}}, {"format": {"tokenizer": str(plain)}}]},
            tmp_path,
        )
