"""Number option keys are never read out of a decimal number: "2.5 mg" names neither option 2 nor
option 5 (it scored as 5: the lone-key rule took the digits after the point)."""

import pytest

from m1_harness.scoring import extract_choice

OPTIONS = {str(i): t for i, t in enumerate(["aspirin", "heparin", "warfarin", "clopidogrel", "alteplase"], 1)}


@pytest.mark.parametrize(
    "response, expected",
    [
        ("The dose is 2.5 mg. The answer is 3", ("3", "answer_is")),
        ("Give 0.5 mg, then option 4.", ("4", "letter")),
        ("Halve it to 2,5 mg; I pick 1", ("1", "letter")),
        ("\\boxed{4}", ("4", "boxed")),
    ],
)
def test_a_decimal_is_not_a_number_key(response, expected):
    assert extract_choice(response, OPTIONS) == expected


@pytest.mark.parametrize("response", ["The dose is 2.5 mg.", "answer is 2.5", "\\boxed{2.5}", "about 0.5 of them"])
def test_a_decimal_alone_names_no_key(response):
    # no rule finds a key; what is left is the option-text similarity guess or none (M1_HARNESS_STRICT counts it wrong)
    assert extract_choice(response, OPTIONS)[1] in ("similarity", "none")
