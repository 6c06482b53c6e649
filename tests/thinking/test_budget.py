"""The budget algorithm pinned token for token on a scripted engine (one id per character)."""

import pytest

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.scripted import Script, ScriptedEngine, StreamingScriptedEngine
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest

M1 = PRESETS["m1"]
END, START = "<|im_end|>", "<|im_start|>"
ANSWER = "The answer is \\boxed{A}.\n\nMore text" + END


def run(scripts, reqs, markers=M1, **kw):
    engine = ScriptedEngine({p: Script(r, ANSWER) for p, r in scripts.items()}, **kw)
    forcer = BudgetForcer(engine, markers)
    reqs = [BudgetRequest(engine.tokenizer.encode(p), **r) for p, r in reqs]
    return forcer.run(reqs), engine


def test_natural_end_no_forcing():
    (t,), engine = run({"Q": ["abc" + END]}, [("Q", dict(thinking_budget=10))])
    assert (t.generated_tokens, t.forced_tokens, t.rounds, t.hit_budget) == (3, 0, 1, False)
    assert t.text == "<|im_start|>think\nabc\n<|im_start|>answer\nThe answer is \\boxed{A}.\n\nMore text"
    assert engine.calls[0][0].max_tokens == 10


def test_forcing_splices_newline_and_wait_at_token_level():
    (t,), _ = run({"Q": ["abc" + END, "de" + START, "fgh" + END]}, [("Q", dict(thinking_budget=100, forcing=2))])
    assert t.text.startswith("<|im_start|>think\nabc\nWaitde\nWaitfgh\n<|im_start|>answer\nThe")
    assert (t.generated_tokens, t.forced_tokens, t.rounds) == (8, 10, 3)
    assert t.forced_positions == [3, 10] and t.forced_counts == [5, 5]
    assert t.finish_reasons == ["stop"] * 3 and t.stop_reasons == [2, 1, 2]
    assert len(t.thinking_ids) == 18 and "Final Answer" not in t.text
    assert t.thinking_span == [18, 36] and t.forced_spans == [[21, 26], [28, 33]]
    assert [t.text[s:e] for s, e in t.forced_spans] == ["\nWait", "\nWait"]


def test_no_newline_before_wait_after_whitespace():
    (t,), _ = run({"Q": ["ab \n" + END, "c" + END]}, [("Q", dict(thinking_budget=100, forcing=1))])
    assert "ab \nWaitc\n<|im_start|>answer" in t.text and t.forced_tokens == 4


def test_empty_first_round_forces_without_newline():
    (t,), _ = run({"Q": [END, "c" + END]}, [("Q", dict(thinking_budget=100, forcing=1))])
    assert t.text.startswith("<|im_start|>think\nWaitc\n<|im_start|>answer") and t.forced_tokens == 4


def test_budget_cut_gets_final_answer():
    (t,), _ = run({"Q": ["abcdefghij" + END]}, [("Q", dict(thinking_budget=6, forcing=3))])
    assert t.hit_budget and t.thinking_ids and len(t.thinking_ids) == 6 and t.rounds == 1
    assert t.text.startswith("<|im_start|>think\nabcdef\n<|im_start|>answer\nFinal Answer:The answer")
    assert t.thinking_span == [18, 24] and t.forced_spans == [] and t.text[24:26] == "\n<"


def test_forcing_that_does_not_fit_is_skipped():
    # 3 generated + "\nWait" (5) leaves no token to generate in a budget of 8: no forcing, no cut.
    (t,), _ = run({"Q": ["abc" + END, "de" + END]}, [("Q", dict(thinking_budget=8, forcing=1))])
    assert t.forcing_skipped and not t.hit_budget and t.forced_tokens == 0 and "Final" not in t.text
    # budget 9: forced, then one token of room -> cut by the budget, exactly 9 thinking ids.
    (t,), _ = run({"Q": ["abc" + END, "de" + END]}, [("Q", dict(thinking_budget=9, forcing=1))])
    assert t.hit_budget and len(t.thinking_ids) == 9 and t.generated_tokens == 4 and t.forced_tokens == 5
    assert "abc\nWaitd\n<|im_start|>answer\nFinal Answer:" in t.text


@pytest.mark.parametrize("forcing", [0, 1, 2, 3, 5])
def test_forcing_applied_exactly_as_often_as_asked_and_possible(forcing):
    rounds = ["ab" + END] * 10
    (t,), _ = run({"Q": rounds}, [("Q", dict(thinking_budget=1000, forcing=forcing))])
    assert t.forcing_rounds == forcing and t.rounds == forcing + 1
    assert t.generated_tokens == 2 * (forcing + 1) and t.forced_tokens == 5 * forcing


def test_batch_rounds_and_per_request_budgets():
    scripts = {"A": ["a" * 50 + END], "B": ["b" + END] * 4, "C": ["c" * 7 + END, "x" * 30]}
    reqs = [
        ("A", dict(thinking_budget=20)),
        ("B", dict(thinking_budget=100, forcing=3)),
        ("C", dict(thinking_budget=25, forcing=1)),
        ("A", dict(thinking_budget=0)),
    ]
    (a, b, c, z), engine = run(scripts, reqs)
    assert [len(batch) for batch in engine.calls] == [3, 2, 1, 1, 4]  # rounds batched, then answers
    assert [r.max_tokens for r in engine.calls[0]] == [20, 100, 25]
    assert [r.max_tokens for r in engine.calls[1]] == [100 - 6, 25 - 12]
    assert a.hit_budget and len(a.thinking_ids) == 20
    assert not b.hit_budget and (b.generated_tokens, b.forced_tokens) == (4, 15)
    assert c.hit_budget and len(c.thinking_ids) == 25 and (c.generated_tokens, c.forced_tokens) == (20, 5)
    for t in (a, b, c):
        assert t.generated_tokens + t.forced_tokens == len(t.thinking_ids) <= t.thinking_budget


def test_groups_of_round_size_go_through_all_their_rounds_before_the_next_group():
    scripts = {"AAA": ["a" * 50 + END], "B": ["b" + END] * 4, "CC": ["c" * 7 + END, "x" * 30]}
    reqs = [
        ("B", dict(thinking_budget=100, forcing=3)),
        ("AAA", dict(thinking_budget=20)),
        ("CC", dict(thinking_budget=25, forcing=1)),
    ]
    together, _ = run(scripts, reqs)
    grouped, engine = run(scripts, reqs, round_size=2)
    think, answer = START + "think\n", "\n" + START + "answer\n"
    assert [[(engine.tokenizer.decode(r.prompt_ids), r.max_tokens) for r in call] for call in engine.calls] == [
        # the two longest prompts, through every round ...
        [("AAA" + think, 20), ("CC" + think, 25)],
        [("CC" + think + "ccccccc\nWait", 13)],
        [
            ("AAA" + think + "a" * 20 + answer + "Final Answer:", 256),
            ("CC" + think + "ccccccc\nWait" + "x" * 13 + answer + "Final Answer:", 256),
        ],
        # ... then the next group
        [("B" + think, 100)],
        [("B" + think + "b\nWait", 94)],
        [("B" + think + "b\nWait" * 2, 88)],
        [("B" + think + "b\nWait" * 3, 82)],
        [("B" + think + "b\nWait" * 3 + "b" + answer, 256)],
    ]
    assert [(t.thinking_ids, t.answer_ids, t.text) for t in grouped] == [
        (t.thinking_ids, t.answer_ids, t.text) for t in together
    ]


def test_budget_zero_skips_thinking():
    (t,), engine = run({"Q": ["abc" + END]}, [("Q", dict(thinking_budget=0, forcing=2))])
    assert t.rounds == 0 and not t.hit_budget and len(engine.calls) == 1
    assert t.text.startswith("<|im_start|>think\n\n<|im_start|>answer\nThe answer")


def test_task_stop_strings_never_end_thinking_but_end_the_answer():
    (t,), engine = run({"Q": ["one\n\ntwo A. three" + END]}, [("Q", dict(thinking_budget=100, until=["\n\n", "A."]))])
    assert all(not r.stop_strings for r in engine.calls[0])
    assert "one\n\ntwo A. three\n<|im_start|>answer\nThe answer is \\boxed{A}." == t.text[len("<|im_start|>think\n") :]


def test_special_token_until_stops_by_id():
    (t,), engine = run({"Q": ["abc" + END]}, [("Q", dict(thinking_budget=10, until=["<|im_end|>", "zz"]))])
    answer_req = engine.calls[-1][0]
    assert 2 in answer_req.stop_token_ids and list(answer_req.stop_strings) == ["zz"]


def test_auto_budget_per_request_and_answer_clamped_to_context():
    scripts = {"Q": ["a" * 500 + END], "QQQQQQQQQQ": ["a" * 500 + END]}
    reqs = [
        ("Q", dict(thinking_budget="auto", answer_budget=10)),
        ("QQQQQQQQQQ", dict(thinking_budget="auto", answer_budget=10)),
        ("Q", dict(thinking_budget=1000, answer_budget=50)),
    ]
    (a, b, c), engine = run(scripts, reqs, max_model_len=100)
    cut = len("\n<|im_start|>answer\nFinal Answer:") - len("<|im_start|>") + 1  # 1 special id
    assert a.thinking_budget == 100 - (1 + 18 - 11) - cut - 10  # prompt + "<|im_start|>think\n" (8 ids)
    assert b.thinking_budget == a.thinking_budget - 9
    for t in (a, b):
        assert len(t.prompt_ids) + len(t.thinking_ids) + len(t.answer_prefix_ids) + t.answer_budget <= 100
        assert t.answer_budget == 10
    assert c.thinking_budget == a.thinking_budget + 10 - 1 and c.answer_budget == 1


def test_think_tags_preset_uses_string_stop_when_marker_is_not_one_token():
    tags = PRESETS["think_tags"]
    (t,), engine = run(
        {"Q": ["abc</think>", "de</think>"]},
        [("Q", dict(thinking_budget=100, forcing=1))],
        markers=tags,
        think_start="<think>\n",
    )
    assert list(engine.calls[0][0].stop_strings) == ["</think>"]
    assert t.text.startswith("<think>\nabc\nWaitde\n</think>\nThe answer") and t.forced_tokens == 5


def test_answer_budget_zero_generates_no_answer():
    (t,), engine = run({"Q": ["abc" + END]}, [("Q", dict(thinking_budget=10, answer_budget=0))])
    assert len(engine.calls) == 1 and engine.calls[0][0].max_tokens == 10  # the thinking round only
    assert (t.answer_ids, t.answer_budget, t.answer_finish_reason) == ([], 0, "length")
    assert t.text == "<|im_start|>think\nabc\n<|im_start|>answer\n"


def test_prompts_at_and_past_the_context_limit():
    # CharTokenizer: "P" * n + "<|im_start|>think\n" is n + 7 ids; "\n<|im_start|>answer\nFinal Answer:" is 22.
    scripts = {"P" * 10: ["abc" + END], "P" * 9: ["abc" + END], "P" * 40: ["abc" + END]}
    reqs = [
        ("P" * 10, dict(thinking_budget=100)),
        ("P" * 9, dict(thinking_budget=100)),
        ("P" * 40, dict(thinking_budget=100)),
    ]
    (at, one, past), engine = run(scripts, reqs, max_model_len=40)
    # 17 + 22 = 39: room for no thinking token and the 1 answer token the clamp keeps
    assert (at.thinking_budget, at.rounds, at.answer_budget) == (0, 0, 40 - 17 - 9)
    # one id shorter: exactly one thinking token fits, cut by the budget -> "Final Answer:"
    assert (one.thinking_budget, one.thinking_tokens, one.hit_budget) == (1, 1, True)
    assert one.answer_budget == 40 - 16 - 1 - 22 and one.text.startswith(
        "<|im_start|>think\na\n<|im_start|>answer\nFinal Answer:"
    )
    # longer than the context: no thinking, no answer, and no engine call for it at all
    assert (past.thinking_budget, past.rounds, past.answer_budget, past.answer_ids) == (0, 0, 0, [])
    assert past.answer_finish_reason == "length" and past.text == "<|im_start|>think\n\n<|im_start|>answer\n"
    assert all(len(r.prompt_ids) < 40 for call in engine.calls for r in call)


def test_a_non_default_forcing_string_is_spliced_by_its_own_ids():
    engine = ScriptedEngine({"Q": Script(["abc" + END, "de" + END], ANSWER)}, forcing_str="Hmm,")
    (t,) = BudgetForcer(engine, M1, "Hmm,").run([BudgetRequest(engine.tokenizer.encode("Q"), 100, 1)])
    assert t.text.startswith("<|im_start|>think\nabc\nHmm,de\n<|im_start|>answer\nThe answer")
    assert t.forced_positions == [3] and t.forced_counts == [5] and t.forced_tokens == 5
    assert t.thinking_ids[3:8] == engine.tokenizer.encode("\nHmm,") and "Wait" not in t.text


# -- the streaming driver (engines with submit / poll: vLLM) ------------------------------------
STREAM_SCRIPTS = {"A": ["a" * 50 + END], "B": ["b" + END] * 4, "CC": ["c" * 7 + END, "x" * 30], "D": ["d" + END]}
STREAM_REQS = [
    ("A", dict(thinking_budget=20)),
    ("B", dict(thinking_budget=100, forcing=3)),
    ("CC", dict(thinking_budget=25, forcing=1)),
    ("A", dict(thinking_budget=0)),
    ("D", dict(thinking_budget=10, answer_budget=0)),
    ("B", dict(thinking_budget=9, forcing=2)),
]


def run_stream(scripts, reqs, **kw):
    engine = StreamingScriptedEngine({p: Script(r, ANSWER) for p, r in scripts.items()}, **kw)
    reqs = [BudgetRequest(engine.tokenizer.encode(p), **r) for p, r in reqs]
    done = []
    traces = BudgetForcer(engine, M1).run(reqs, on_done=lambda i, t: done.append((i, t, list(engine.log))))
    return traces, engine, done


def fields_of(t):
    return (
        t.thinking_ids,
        t.forced_positions,
        t.rounds,
        t.hit_budget,
        t.forcing_skipped,
        t.answer_prefix_ids,
        t.answer_budget,
        t.answer_ids,
        t.answer_finish_reason,
        t.text,
        t.round_tokens,
    )


def test_streaming_driver_gives_the_batched_traces():
    batched, _ = run(STREAM_SCRIPTS, STREAM_REQS)
    streamed, engine, _ = run_stream(STREAM_SCRIPTS, STREAM_REQS)
    assert [fields_of(t) for t in streamed] == [fields_of(t) for t in batched]
    assert sum(len(c) for c in engine.calls) == 2 + 5 + 3 + 1 + 1 + 3  # answer_budget=0: no answer call


def test_streaming_sends_each_next_round_the_moment_the_last_one_ends():
    _, engine, _ = run_stream(STREAM_SCRIPTS, STREAM_REQS)
    log = engine.log
    # B's 5 calls (4 rounds, answer): each submitted right after its previous one finished
    b = [n for n, (what, key) in enumerate(log) if key == 1]
    assert [log[n][0] for n in b] == ["submit", "done"] * 5
    assert all(b[k + 1] == b[k] + 1 for k in range(1, len(b) - 1, 2))


def test_streaming_admits_only_what_the_kv_cache_holds():
    reqs = [("A", dict(thinking_budget=20, answer_budget=8))] * 6
    # each request at most: "A" + 7 think marker ids + 20 + 22 ids of "\n<|im_start|>answer\nFinal Answer:"
    # + 8 = 58 ids = 8 blocks of 8, + 1 for a finished round's partial block = 9
    traces, engine, done = run_stream({"A": ["a" * 50 + END]}, reqs, kv_cache_tokens=8 * 18, block_size=8)
    assert engine.peak == 2  # 2 x 9 blocks fit in 18, a third does not
    assert [i for i, _, _ in done] == [0, 1, 2, 3, 4, 5]
    alone, engine1, _ = run_stream({"A": ["a" * 50 + END]}, reqs, kv_cache_tokens=8 * 17, block_size=8)
    assert engine1.peak == 1 and [t.text for t in alone] == [t.text for t in traces]
    unlimited, engine6, _ = run_stream({"A": ["a" * 50 + END]}, reqs)  # no KV size known: no limit
    assert engine6.peak == 6 and [t.text for t in unlimited] == [t.text for t in traces]


def test_streaming_admits_at_most_max_in_flight_requests_when_the_kv_cache_is_unknown():
    """A server engine (engines/server.py) knows how many requests it takes at once, not its KV size."""
    engine = StreamingScriptedEngine({"A": Script(["a" * 50 + END], ANSWER)})
    engine.max_in_flight = 2
    reqs = [BudgetRequest(engine.tokenizer.encode("A"), thinking_budget=20, answer_budget=8)] * 6
    traces = BudgetForcer(engine, M1).run(reqs)
    assert engine.peak == 2
    unlimited, engine6, _ = run_stream({"A": ["a" * 50 + END]}, [("A", dict(thinking_budget=20, answer_budget=8))] * 6)
    assert engine6.peak == 6 and [t.text for t in unlimited] == [t.text for t in traces]


def test_on_done_gets_each_final_trace_once_the_moment_it_is_final():
    traces, engine, done = run_stream(STREAM_SCRIPTS, STREAM_REQS)
    assert sorted(i for i, _, _ in done) == list(range(len(STREAM_REQS)))
    for i, t, log in done:
        assert t is traces[i] and t.text
        assert log.count(("done", i)) == sum(len(v) for v in t.round_tokens.values()) // 3
    # batched driver: on_done too, once per request, in group order
    engine2 = ScriptedEngine({p: Script(r, ANSWER) for p, r in STREAM_SCRIPTS.items()}, round_size=2)
    seen = []
    reqs = [BudgetRequest(engine2.tokenizer.encode(p), **r) for p, r in STREAM_REQS]
    out = BudgetForcer(engine2, M1).run(reqs, on_done=lambda i, t: seen.append((i, t)))
    assert sorted(i for i, _ in seen) == list(range(len(reqs))) and all(t is out[i] for i, t in seen)


def test_round_tokens_count_context_and_generated_ids_per_call():
    (t,), _ = run({"Q": ["ab" + END, "cd" + END]}, [("Q", dict(thinking_budget=100, forcing=1, answer_budget=5))])
    prompt = len("Q") + len("<|im_start|>think\n") - len("<|im_start|>") + 1
    assert t.round_tokens == {
        "context_tokens": [prompt, prompt + 2 + 5, prompt + 2 + 5 + 2 + len("\n<|im_start|>answer\n") - 11],
        "cached_tokens": [0, 0, 0],  # the scripted engine has no prefix cache
        "generated_tokens": [3, 3, 5],  # "ab" + end id, "cd" + end id, 5 answer ids (budget)
    }


def test_streaming_driver_stopped_part_way_leaves_nothing_in_flight():
    class Failing(StreamingScriptedEngine):
        polls = 0

        def poll(self):
            self.polls += 1
            if self.polls == 4:
                raise KeyboardInterrupt
            return super().poll()

    engine = Failing({p: Script(r, ANSWER) for p, r in STREAM_SCRIPTS.items()})
    reqs = [BudgetRequest(engine.tokenizer.encode(p), **r) for p, r in STREAM_REQS]
    with pytest.raises(KeyboardInterrupt):
        BudgetForcer(engine, M1).run(reqs)
    assert engine.queue == [] and ("submit", 5) in engine.log  # all had been admitted, none is left
