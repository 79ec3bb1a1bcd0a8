"""A procedurally generated arithmetic benchmark in five difficulty levels, for models too small for GSM8K.

Levels (all answers are non-negative integers):
    1  single-digit addition                       "What is 3 + 5?"
    2  two-digit addition or subtraction           "What is 47 - 12?"
    3  two-digit times single-digit multiplication "What is 23 * 7?"
    4  three terms, mixed operations, parentheses  "What is (12 + 5) * 3?"
    5  two-step word problems                      "Tom has 12 apples. He buys 3 bags with 4 apples each. ..."

Level 1 is easy enough that a 135M instruct model scores above zero, so the accuracy curve over levels shows
where a fine-tune starts to cost reasoning even on the demo model.

Determinism: item `i` of level `L` under `seed` is drawn from its own generator seeded with "seed:L:i", so an
item never depends on `n` or on the other levels asked for, and its id `arith-s{seed}-L{L}-{i:05d}` is stable.

Usage:
    >>> df = generate_arithmetic(10, [1, 2], seed=0)
    >>> list(df.columns)
    ['id', 'prompt', 'answer', 'level', 'expression']
"""

from __future__ import annotations

import ast
import operator
import random
from collections.abc import Callable, Sequence

import pandas as pd

from dgr_core.errors import DGRError

LEVELS = (1, 2, 3, 4, 5)

# One item: (question text, expression in Python syntax that evaluates to the answer).
Item = tuple[str, str]


def _level1(rng: random.Random) -> Item:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return f"What is {a} + {b}?", f"{a} + {b}"


def _level2(rng: random.Random) -> Item:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if rng.random() < 0.5:
        return f"What is {a} + {b}?", f"{a} + {b}"
    a, b = max(a, b), min(a, b)  # keep answers non-negative: small models have not learned negatives
    return f"What is {a} - {b}?", f"{a} - {b}"


def _level3(rng: random.Random) -> Item:
    a, b = rng.randint(10, 99), rng.randint(2, 9)
    return f"What is {a} * {b}?", f"{a} * {b}"


def _level4(rng: random.Random) -> Item:
    a, b, c = rng.randint(10, 50), rng.randint(2, 30), rng.randint(2, 9)
    shapes = [
        f"({a} + {b}) * {c}",
        f"({max(a, b)} - {min(a, b)}) * {c}",
        f"{a} + {b} * {c}",
        f"{c} * ({a} + {b}) - {b}",
    ]
    expr = rng.choice(shapes)
    return f"What is {expr}?", expr


# Two-step word problems: a template with three slots and the expression that answers it.
_WORD_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{name} has {a} apples. {pron} buys {b} bags with {c} apples in each bag. How many apples does {name} have now?",
     "{a} + {b} * {c}"),
    ("{name} had {a} dollars and spent {b} dollars on lunch. Then {pron_l} earned {c} dollars. How many dollars does "
     "{name} have now?", "{a} - {b} + {c}"),
    ("A shelf holds {b} rows of {c} books. {name} adds {a} more books. How many books are on the shelf?",
     "{b} * {c} + {a}"),
    ("{name} reads {c} pages every day for {b} days, then reads {a} more pages the next day. How many pages did "
     "{name} read in total?", "{c} * {b} + {a}"),
    ("A box has {a} pencils. {name} gives away {b} pencils and then buys {c} packs of 2 pencils. How many pencils "
     "are in the box now?", "{a} - {b} + {c} * 2"),
)
_NAMES = (("Tom", "He"), ("Mia", "She"), ("Sam", "He"), ("Ana", "She"), ("Leo", "He"), ("Zoe", "She"))


def _level5(rng: random.Random) -> Item:
    text, expr = rng.choice(_WORD_TEMPLATES)
    name, pron = rng.choice(_NAMES)
    a, c = rng.randint(20, 60), rng.randint(2, 9)
    b = rng.randint(2, 9) if "{a} - {b}" not in expr else rng.randint(2, a - 1)
    slots = {"a": a, "b": b, "c": c, "name": name, "pron": pron, "pron_l": pron.lower()}
    return text.format(**slots), expr.format(**slots)


_GENERATORS: dict[int, Callable[[random.Random], Item]] = {
    1: _level1, 2: _level2, 3: _level3, 4: _level4, 5: _level5,
}


_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
}


def _evaluate(expression: str) -> int:
    """Value of an expression of integers, + - * and parentheses (a tiny evaluator: no eval on strings)."""

    def value(node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise DGRError(f"arithmetic: unsupported expression {expression!r}")

    return value(ast.parse(expression, mode="eval").body)


def make_item(level: int, index: int, seed: int) -> dict[str, object]:
    """Item `index` of `level` under `seed` (see the module docstring for why each item has its own generator)."""
    rng = random.Random(f"{seed}:{level}:{index}")
    question, expression = _GENERATORS[level](rng)
    return {
        "id": f"arith-s{seed}-L{level}-{index:05d}",
        "prompt": question,
        "answer": str(_evaluate(expression)),
        "level": level,
        "expression": expression,
    }


def _check_levels(level: int | Sequence[int]) -> list[int]:
    levels = [level] if isinstance(level, int) else list(level)
    bad = [x for x in levels if x not in LEVELS]
    if not levels or bad:
        raise DGRError(f"arithmetic levels must be among {list(LEVELS)}; got {levels}")
    return sorted(set(levels))


def generate_arithmetic(n: int, level: int | Sequence[int], seed: int) -> pd.DataFrame:
    """`n` items in total, spread round-robin over the given levels (the first levels get one more when `n` does
    not divide evenly), sorted by level. Columns: id, prompt, answer (integer as str), level, expression."""
    if n < 1:
        raise DGRError(f"arithmetic: n must be at least 1; got {n}")
    levels = _check_levels(level)
    rows = [make_item(levels[j % len(levels)], j // len(levels), seed) for j in range(n)]
    df = pd.DataFrame(rows, columns=["id", "prompt", "answer", "level", "expression"])
    return df.sort_values(["level", "id"], kind="stable").reset_index(drop=True)
