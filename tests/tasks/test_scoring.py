"""Answer extraction: exact letters and methods for the edge cases the m1 matching rules name."""

from __future__ import annotations

import dataclasses

import pytest

from m1_harness.scoring import Score, answer_part, extract_choice, last_boxed, score

OPTS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}
OPTS10 = {chr(ord("A") + i): f"Drug number {i}" for i in range(10)}
M1 = "<|im_start|>think\n{think}\n<|im_start|>answer\n{answer}"


# --- answer_part -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Answer: B", "Answer: B"),
        ("<|im_start|>think\nhmm\n<|im_start|>answer\nAnswer: B", "Answer: B"),
        ("<think>\nhmm</think>\n\nThe answer is C.", "\nThe answer is C."),
        ("<think>x</think>mid<|im_start|>answer\nlast", "last"),
        ("<|im_start|>answer\nfirst</think>last", "last"),
        ("<|im_start|>answer\nx<|im_start|>answer\ny", "y"),
        ("<|im_start|>answer\n", ""),
        ("", ""),
    ],
)
def test_answer_part(response, expected):
    assert answer_part(response) == expected


# --- last_boxed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{C}", "C"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\text{C}}", "C"),
        (r"\boxed{\textbf{C}}", "C"),
        (r"\boxed{\mathrm{C}}", "C"),
        (r"\boxed{\text{\textbf{D}}}", "D"),
        (r"\boxed{(B)}", "B"),
        (r"\boxed{[B]}", "B"),
        (r"\boxed{$A$}", "A"),
        (r"\boxed{B.}", "B"),
        (r"\boxed {D}", "D"),
        (r"\fbox{A}", "A"),
        (r"\boxed{ C. Warfarin }", "C. Warfarin"),
        (r"\boxed{(B) Heparin (unfractionated)}", "(B) Heparin (unfractionated)"),
        (r"\boxed{A} then \boxed{C}", "C"),
        (r"\fbox{B} then \boxed{D}", "D"),
        (r"\boxed{D} then \fbox{B}", "B"),
        (r"\boxed{B} and \boxed{C", None),
        ("no box here", None),
        (r"\boxed C", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


# --- boxed decides -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected",
    [
        (r"\boxed{C}", "C"),
        (r"\boxed{c}", "C"),
        (r"\boxed{\text{C}}", "C"),
        (r"\boxed{(B)}", "B"),
        (r"\boxed{Warfarin}", "C"),
        (r"\boxed{  warfarin  }", "C"),
        (r"\boxed{C. Warfarin}", "C"),
        (r"\boxed{C.  warfarin.}", "C"),
        (r"\boxed{C) Warfarin}", "C"),
        (r"\boxed{(C) Warfarin}", "C"),
        (r"\boxed{C: Warfarin}", "C"),
        (r"\boxed{\text{D. Clopidogrel}}", "D"),
        (r"\fbox{A}", "A"),
        (r"$\boxed{\text{\textbf{D}}}$", "D"),
        (r"first \boxed{A}, on reflection \boxed{C}", "C"),
        (r"\boxed{D} and later \fbox{B}", "B"),
    ],
)
def test_boxed_decides(response, expected):
    assert extract_choice(response, OPTS) == (expected, "boxed")
    assert extract_choice(response, OPTS, match="first") == (expected, "boxed")


def test_box_in_thinking_ignored_when_answer_marker_present():
    r = M1.format(think=r"maybe \boxed{A}", answer=r"Answer: \boxed{D}")
    assert extract_choice(r, OPTS) == ("D", "boxed")
    r = M1.format(think=r"maybe \boxed{A}", answer="Answer: D")
    assert extract_choice(r, OPTS) == ("D", "letter")
    r = "<think>\n" + r"\boxed{A}" + "</think>\n\nThe answer is B."
    assert extract_choice(r, OPTS) == ("B", "answer_is")


def test_budget_cut_final_answer_prefix():
    r = M1.format(think="long thinking cut", answer=r"Final Answer: \boxed{B}")
    assert extract_choice(r, OPTS) == ("B", "boxed")


def test_box_in_thinking_counts_without_marker():
    assert extract_choice(r"thinking \boxed{A} and then nothing", OPTS) == ("A", "boxed")


# --- cascade on the boxed content ----------------------------------------------------------------


def test_boxed_label_with_wrong_text_falls_back_to_letter_rule():
    # "B. Warfarin" is neither B's text nor C's label: the cascade on the content finds the letter.
    assert extract_choice(r"\boxed{B. Warfarin}", OPTS) == ("B", "letter")


def test_boxed_answer_is_sentence():
    assert extract_choice(r"\boxed{The answer is D}", OPTS) == ("D", "answer_is")


def test_boxed_option_text_inside_longer_phrase():
    assert extract_choice(r"\boxed{warfarin therapy}", OPTS) == ("C", "option_text")


def test_boxed_misspelled_option_similarity():
    assert extract_choice(r"\boxed{Heprin}", OPTS) == ("B", "similarity")


def test_boxed_content_not_whole_answer_part():
    # The cascade runs on the boxed content only: "A" outside the box is not seen.
    assert extract_choice(r"Answer: A? No: \boxed{warfarin therapy}", OPTS) == ("C", "option_text")


def test_empty_box_falls_back_to_answer_part():
    assert extract_choice(r"Answer: \boxed{} C", OPTS) == ("C", "letter")


def test_unclosed_box_falls_back_to_answer_part():
    assert extract_choice(r"Answer: \boxed{D", OPTS) == ("D", "letter")


# --- answer is ---------------------------------------------------------------------------------


def test_answer_is_first_vs_last():
    r = "At first the answer is C. Rechecking, the answer is D."
    assert extract_choice(r, OPTS) == ("D", "answer_is")
    assert extract_choice(r, OPTS, match="first") == ("C", "answer_is")


def test_answer_is_beats_letters_and_text():
    r = "Options B and C are wrong, so the answer is A although warfarin is tempting."
    assert extract_choice(r, OPTS) == ("A", "answer_is")


def test_answer_is_needs_the_letter_right_after():
    # "(C)" is not "answer is C": the lone-letter rule finds it instead.
    assert extract_choice("The answer is (C).", OPTS) == ("C", "letter")


def test_answer_is_case_sensitive_like_reference():
    assert extract_choice("Answer is C", OPTS) == ("C", "letter")


def test_answer_is_takes_initial_capital_like_reference():
    # Kept from the reference: "answer is H..." yields H even with options A-D, scored wrong.
    assert extract_choice("I think the answer is Heparin", OPTS) == ("H", "answer_is")
    assert score("I think the answer is Heparin", OPTS, "B") == Score("H", "answer_is", False)


# --- lone letters ------------------------------------------------------------------------------


def test_lone_letters_first_vs_last():
    r = "Between B and D, I pick D."
    assert extract_choice(r, OPTS) == ("D", "letter")
    r = "Between B and D, I pick neither but C."
    assert extract_choice(r, OPTS, match="first") == ("B", "letter")
    assert extract_choice(r, OPTS, match="last") == ("C", "letter")


def test_article_a_is_not_a_letter():
    r = "A good choice here is C"
    assert extract_choice(r, OPTS, match="first") == ("C", "letter")
    assert extract_choice(r, OPTS, match="last") == ("C", "letter")


def test_letter_a_at_end_or_before_punctuation_counts():
    assert extract_choice("Answer: A", OPTS) == ("A", "letter")
    assert extract_choice("Answer: A.", OPTS) == ("A", "letter")
    assert extract_choice("Answer: (A) aspirin", OPTS) == ("A", "letter")


def test_letters_inside_words_do_not_count():
    # "CAB", "DNA": capitals inside words are not lone letters; "aspirin" text then decides.
    assert extract_choice("CAB and DNA tests; give aspirin", OPTS) == ("A", "option_text")


def test_only_the_items_letters_count():
    r = "Option E is not offered, so B"
    assert extract_choice(r, OPTS, match="first") == ("B", "letter")
    assert extract_choice(r, {**OPTS, "E": "Dabigatran"}, match="first") == ("E", "letter")


def test_adjacent_letters_consume_their_neighbours_like_reference():
    assert extract_choice("B,C", OPTS) == ("B", "letter")
    assert extract_choice("B, C", OPTS) == ("C", "letter")


def test_m1_answer_line():
    r = M1.format(think="The anticoagulant of choice...", answer="Answer: C<|im_end|>")
    assert extract_choice(r, OPTS) == ("C", "letter")


# --- option text -------------------------------------------------------------------------------


def test_option_text_first_vs_last():
    r = "warfarin was considered, then heparin was chosen"
    assert extract_choice(r, OPTS, match="last") == ("B", "option_text")
    # earliest first occurrence (the reference's ans_first would pick heparin here)
    assert extract_choice(r, OPTS, match="first") == ("C", "option_text")


def test_option_text_last_uses_last_occurrence():
    r = "heparin, warfarin, and finally heparin again"
    assert extract_choice(r, OPTS, match="last") == ("B", "option_text")
    assert extract_choice(r, OPTS, match="first") == ("B", "option_text")


def test_option_text_case_insensitive():
    assert extract_choice("give CLOPIDOGREL now", OPTS) == ("D", "option_text")


def test_option_text_prefix_tie_goes_to_listed_first():
    opts = {"A": "Aspirin", "B": "Aspirin and clopidogrel", "C": "Heparin", "D": "None"}
    assert extract_choice("give aspirin and clopidogrel", opts) == ("A", "option_text")
    opts = {"A": "Aspirin and clopidogrel", "B": "Aspirin", "C": "Heparin", "D": "None"}
    assert extract_choice("give aspirin and clopidogrel", opts) == ("A", "option_text")


def test_empty_option_text_is_skipped():
    opts = {"A": "", "B": "Heparin", "C": "Warfarin"}
    assert extract_choice("heparin", opts) == ("B", "option_text")


# --- similarity ----------------------------------------------------------------------------------


def test_similarity_guess():
    assert extract_choice("hep", OPTS) == ("B", "similarity")
    assert extract_choice("clopidogrl", OPTS, match="first") == ("D", "similarity")


def test_similarity_tie_goes_to_later_option():
    opts = {"A": "xa", "B": "xb", "C": "zz"}
    assert extract_choice("x", opts) == ("B", "similarity")


def test_nothing_in_common_is_none():
    assert extract_choice("123 ???", OPTS) == (None, "none")


# --- nothing to extract ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    ["", "   \n ", M1.format(think=r"\boxed{A} surely", answer=""), "<think>The answer is A</think>\n"],
)
def test_empty_answer_is_none(response):
    assert extract_choice(response, OPTS) == (None, "none")
    assert score(response, OPTS, "A") == Score(None, "none", False)


# --- ten options ------------------------------------------------------------------------------


def test_ten_options():
    assert extract_choice(r"\boxed{J}", OPTS10) == ("J", "boxed")
    assert extract_choice(r"\boxed{Drug number 7}", OPTS10) == ("H", "boxed")
    assert extract_choice(r"\boxed{I. Drug number 8}", OPTS10) == ("I", "boxed")
    assert extract_choice("so the best is G.", OPTS10) == ("G", "letter")
    assert extract_choice("the answer is I", OPTS10) == ("I", "answer_is")
    assert extract_choice("drug number 9 it is", OPTS10) == ("J", "option_text")


def test_letter_beyond_item_letters_is_not_a_letter():
    assert extract_choice("so the best is G.", OPTS) != ("G", "letter")
    assert extract_choice("so the best is G.", OPTS)[1] == "similarity"


def test_three_options():
    opts = {"A": "yes", "B": "no", "C": "maybe"}
    assert extract_choice(r"\boxed{maybe}", opts) == ("C", "boxed")
    assert extract_choice("D is not an option; C", opts, match="first") == ("C", "letter")


# --- match argument and score -----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["LAST", "middle", "", None])
def test_invalid_match(bad):
    with pytest.raises(ValueError, match=r"match must be one of .*'last'.*'first'"):
        extract_choice(r"\boxed{A}", OPTS, match=bad)
    with pytest.raises(ValueError, match="match"):
        score("", OPTS, "A", match=bad)


def test_empty_options_rejected():
    with pytest.raises(ValueError, match="options"):
        extract_choice("A", {})


def test_score():
    assert score(r"\boxed{C}", OPTS, "C") == Score("C", "boxed", True)
    assert score(r"\boxed{C}", OPTS, "c") == Score("C", "boxed", True)
    assert score(r"\boxed{C}", OPTS, "B") == Score("C", "boxed", False)
    r = "first the answer is B, finally the answer is C"
    assert score(r, OPTS, "B").correct is False
    assert score(r, OPTS, "B", match="first").correct is True


def test_score_is_frozen():
    s = score(r"\boxed{C}", OPTS, "C")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.correct = False  # type: ignore[misc]
