"""Generated arithmetic set (dgr_core.evaluate.arithmetic): determinism, levels, correct answers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from dgr_core.errors import DGRError
from dgr_core.evaluate.arithmetic import LEVELS, generate_arithmetic
from dgr_core.evaluate.extract import Outcome, is_correct


def _recompute(expression: str) -> int:
    """Independent evaluation: Python's own arithmetic on a string of digits, + - * and parentheses."""
    assert re.fullmatch(r"[\d +\-*()]+", expression), expression
    return eval(expression, {"__builtins__": {}})  # noqa: S307 - checked to be pure arithmetic above


def test_columns_and_types() -> None:
    df = generate_arithmetic(20, list(LEVELS), seed=0)
    assert list(df.columns) == ["id", "prompt", "answer", "level", "expression"]
    assert len(df) == 20 and df["id"].is_unique
    assert all(isinstance(a, str) and a.lstrip("-").isdigit() for a in df["answer"])


def test_deterministic_and_seed_sensitive() -> None:
    a, b = generate_arithmetic(50, [1, 3, 5], seed=7), generate_arithmetic(50, [1, 3, 5], seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not generate_arithmetic(50, [1, 3, 5], seed=8)["prompt"].equals(a["prompt"])


def test_ids_are_stable_when_n_or_levels_change() -> None:
    small = generate_arithmetic(6, [2], seed=1).set_index("id")
    large = generate_arithmetic(60, [1, 2, 4], seed=1).set_index("id")
    pd.testing.assert_frame_equal(small, large.loc[small.index])


@pytest.mark.parametrize("level", LEVELS)
def test_answers_are_correct(level: int) -> None:
    df = generate_arithmetic(200, level, seed=3)
    assert set(df["level"]) == {level}
    for row in df.itertuples():
        assert int(row.answer) == _recompute(row.expression) >= 0
        numbers_in_prompt = re.findall(r"\d+", row.prompt)
        for number in re.findall(r"\d+", row.expression):  # every operand is stated in the prompt
            assert number in numbers_in_prompt or number == "2", (row.prompt, row.expression)
        if level <= 4:  # the prompt is the expression itself
            assert _recompute(row.prompt.removeprefix("What is ").removesuffix("?")) == int(row.answer)


def test_level_shapes() -> None:
    def operands(level: int) -> list[list[int]]:
        return [list(map(int, re.findall(r"\d+", e))) for e in generate_arithmetic(100, level, seed=0)["expression"]]

    assert all(len(x) == 2 and max(x) <= 9 for x in operands(1))
    assert all(len(x) == 2 and min(x) >= 10 and max(x) <= 99 for x in operands(2))
    assert all(len(x) == 2 and 10 <= x[0] <= 99 and 2 <= x[1] <= 9 for x in operands(3))
    level4 = generate_arithmetic(100, 4, seed=0)["expression"]
    assert all(len(re.findall(r"[+\-*]", e)) >= 2 for e in level4)
    assert any("(" in e for e in level4)
    assert all(len(p.split()) > 10 for p in generate_arithmetic(50, 5, seed=0)["prompt"])  # word problems


def test_round_robin_split() -> None:
    counts = generate_arithmetic(12, [1, 2, 3, 4, 5], seed=0)["level"].value_counts().sort_index()
    assert counts.tolist() == [3, 3, 2, 2, 2]


def test_grading_round_trip() -> None:
    df = generate_arithmetic(25, list(LEVELS), seed=2)
    assert all(is_correct(f"The answer is {a}.", a) == Outcome.CORRECT for a in df["answer"])


@pytest.mark.parametrize(("n", "level"), [(0, 1), (5, 6), (5, []), (5, [1, 0])])
def test_bad_arguments(n: int, level: int | list[int]) -> None:
    with pytest.raises(DGRError):
        generate_arithmetic(n, level, seed=0)
