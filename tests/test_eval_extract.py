"""Answer extraction, normalisation and grading (dgr_core.evaluate.extract)."""

from __future__ import annotations

import pytest

from dgr_core.evaluate.extract import (
    Outcome,
    answers_match,
    extract_answer,
    grade_response,
    is_correct,
    normalize_answer,
    parse_number,
    split_think,
    strip_think,
)

# (response, expected value, expected method)
EXTRACTION_TABLE = [
    (r"So the result is $\boxed{42}$.", "42", "boxed"),
    (r"$\boxed{\frac{3}{4}}$", r"\frac{3}{4}", "boxed"),
    (r"Nested: \boxed{\frac{\sqrt{2}}{2}} done", r"\frac{\sqrt{2}}{2}", "boxed"),
    (r"First try \boxed{5}, corrected: \boxed{7}", "7", "boxed"),
    (r"\fbox{12}", "12", "boxed"),
    (r"\boxed 9 is it", "9", "boxed"),
    (r"\boxed{x} and later \boxed{", "x", "boxed"),  # the cut-off last box is skipped
    (r"\boxed{}  the answer is 3", "3", "answer_is"),  # an empty box is not an answer
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72", "####"),
    ("#### 1,234\n", "1,234", "####"),
    ("The answer is 42.", "42", "answer_is"),
    ("the ANSWER is -7 apples", "-7", "answer_is"),
    ("The final answer is 3.5. I double-checked 10 times.", "3.5", "answer_is"),
    ("Answer: $3/4$", "3/4", "answer_is"),
    ("**Answer:** 17", "17", "answer_is"),
    ("Answer: 5\nOops, the answer is 6", "6", "answer_is"),
    ("Final answer: (B)", "(B)", "answer_is"),
    (r"Answer: \(\frac{1}{2}\)", r"\frac{1}{2}", "answer_is"),
    ("3 + 4 = 7", "7", "last_number"),
    ("We get x = -12", "-12", "last_number"),
    ("10-5 leaves 5", "5", "last_number"),
    ("It costs 1,250,000 dollars", "1,250,000", "last_number"),
    ("about 3.14", "3.14", "last_number"),
    ("half is 1/2", "1/2", "last_number"),
    ("<think>maybe 99</think>I think it is 12", "12", "last_number"),
    ("<think>\\boxed{99}</think>The answer is 12.", "12", "answer_is"),
    ("reasoning with 5 and 6</think>So 11", "11", "last_number"),  # template opened the think block
    ("No numbers here.", None, None),
    ("", None, None),
]


@pytest.mark.parametrize(("response", "value", "method"), EXTRACTION_TABLE)
def test_extraction_table(response: str, value: str | None, method: str | None) -> None:
    got = extract_answer(response)
    assert (got.value, got.method) == (value, method)
    assert got.truncated is False


def test_numbers_inside_think_do_not_count() -> None:
    got = extract_answer("<think>2 + 2 = 4, then 4 * 10 = 40</think>")
    assert got.value is None and not got.truncated


@pytest.mark.parametrize(
    "response",
    ["<think>Let me compute 3 + 4 = 7 and then", "<think>a</think> Answer soon <think> 5 + 5 = 10"],
)
def test_unclosed_think_is_truncated_when_cut_and_malformed_when_stopped(response: str) -> None:
    got = extract_answer(response)
    assert got.truncated and got.value is None
    assert is_correct(response, "7", finished=False) == Outcome.TRUNCATED
    assert is_correct(response, "7") == Outcome.MALFORMED  # ended on end-of-turn inside the think block


def test_split_and_strip_think() -> None:
    assert split_think("<think>r</think> a").status == "closed"
    assert split_think("r</think>a") == split_think("<think>r</think>a")
    assert split_think("just an answer").status == "missing"
    assert split_think("<think>never closed").status == "unclosed"
    assert strip_think("<think>never closed") == ""
    assert strip_think("<think>x</think>\n\nHello<|im_end|>") == "Hello"
    assert split_think("<think>\n\n</think>\n\nI'm sorry.").status == "empty"
    # s1 markers (Safety-Tax, DirectRefusal): the same splitter as the dataset layer
    s1 = split_think("<|im_start|>think\n3 + 4 = 7<|im_start|>answer\nThe answer is 7.<|im_end|>")
    assert (s1.reasoning, s1.answer, s1.status) == ("3 + 4 = 7", "The answer is 7.", "closed")
    assert extract_answer("<|im_start|>think\n3 + 4 = 7 so").truncated
    # thinking twice: the answer follows the last block
    twice = split_think("<think>a</think>draft 1<think>b</think>final 2")
    assert (twice.answer, twice.status) == ("final 2", "closed") and "draft 1" in twice.reasoning


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("$42$", "42"),
        ("1,000", "1000"),
        ("12.", "12"),
        (r"\text{Evelyn}", "Evelyn"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\frac12", r"\frac{1}{2}"),
        ("x = 5", "5"),
        (r"\textbf{(073) }", "073"),
        (r"5\text{ cm}", "5"),
        (r"\text{(A)}", "(A)"),
        ("(1,2)", "(1,2)"),
        (None, ""),
    ],
)
def test_normalize(raw: str | None, normal: str) -> None:
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (r"\frac{3}{4}", "3/4", True),
        (r"\dfrac{3}{4}", "0.75", True),
        (r"-\frac{1}{2}", "-0.5", True),
        ("1,234", "1234", True),
        ("073", "73", True),
        ("2", "2.0", True),
        ("1000000", "1000001", False),
        ("3", "-3", False),
        (r"\frac{1}{3}", "0.33", False),
        ("x=\\pi", "\\pi", True),
        ("", "", False),
    ],
)
def test_answers_match(a: str, b: str, same: bool) -> None:
    assert answers_match(a, b) is same


def test_parse_number() -> None:
    assert parse_number(r"\frac{-3}{4}") == -0.75
    assert parse_number("5/0") is None
    assert parse_number("(1,2)") is None


def test_is_correct_outcomes() -> None:
    assert is_correct(r"<think>hmm</think> $\boxed{\frac{3}{4}}$", "3/4") == Outcome.CORRECT
    assert is_correct("The answer is 5.", "6") == Outcome.WRONG
    assert is_correct("I don't know.", "6") == Outcome.NO_ANSWER
    assert is_correct("So far 3 + 4 = 7 and", "7", finished=False) == Outcome.TRUNCATED  # cut mid-reasoning
    assert is_correct("Thus #### 7", "7", finished=False) == Outcome.CORRECT  # explicit answer reached
    assert is_correct("no digits", "7", finished=False) == Outcome.TRUNCATED
    assert Outcome.CORRECT == "correct"  # plain strings in tables and JSON


def test_grade_response_reports_what_math_verify_extracted() -> None:
    outcome, grade = grade_response(r"<think>6/8 = 3/4</think> so $\boxed{\frac{1}{\sqrt3}}$", r"\frac{\sqrt{3}}{3}")
    assert outcome == Outcome.CORRECT and grade is not None
    assert grade.pred[-1] == r"\frac{1}{\sqrt{3}}" and grade.gold[-1] == r"\frac{\sqrt{3}}{3}"
    assert "wrap-gold" in grade.rules
    assert grade_response("<think>never closed", "7") == (Outcome.MALFORMED, None)
