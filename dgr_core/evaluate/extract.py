"""Final-answer extraction and grading for math / arithmetic benchmarks.

How a response is graded:

1. `split_think` separates a `<think>...</think>` block (or s1 `<|im_start|>think` / `answer` markers) from the
   answer, with the same splitter the dataset layer uses. A response with `</think>` but no opening tag (chat
   templates that put `<think>` in the prompt) counts as closed; an opening tag with no closing one means the model
   never reached its answer.
2. `extract_answer` looks at the answer part only, in this order: the last `\\boxed{...}` / `\\fbox{...}` (balanced
   braces, nesting allowed), then the last `#### N` (GSM8K style), then the last "the answer is X" / "Answer: X",
   then the last number in the text.
3. `grade_response` / `is_correct` grade the answer part with Math-Verify (`dgr_core.evaluate.mathgrade`) and
   return an `Outcome`: correct, wrong, truncated (cut at the token limit before its answer), malformed (an
   unclosed think block although the model stopped) or no_answer. Only CORRECT counts as correct: truncated and
   malformed answers are wrong, and are also counted apart.

`normalize_answer` / `answers_match` are the earlier hand-written string matcher ("answer-match-v1"), kept only as
the baseline that `benchmarks/bench_grading.py` measures against Math-Verify; nothing grades with them.

Usage:
    >>> is_correct("<think>2+2 is 4</think> The answer is $\\\\boxed{4}$.", "4")
    <Outcome.CORRECT: 'correct'>
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Literal

from dgr_core.data.schema import THINK_UNCLOSED
from dgr_core.data.think import THINK_CLOSE, THINK_OPEN
from dgr_core.data.think import split_think as _split_response
from dgr_core.evaluate.mathgrade import MathGrade, grade_many

# ---------------------------------------------------------------------------------------------------------------
# Reasoning / answer split
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThinkSplit:
    """A response cut into its reasoning and its answer. `status` is one of `dgr_core.data.schema.THINK_STATUSES`:
    "closed", "empty" (markers around nothing), "missing" (no markers: all answer) or "unclosed" (the reasoning
    never ended, so the answer was never reached; `answer` is whatever came before the open tag, usually "")."""

    reasoning: str
    answer: str
    status: str


def split_think(text: str) -> ThinkSplit:
    """Split a response with the dataset splitter (`dgr_core.data.think`: R1 `<think>` tags, a lone `</think>`,
    s1 `<|im_start|>think/answer` markers, trailing end-of-turn tokens), so a response is cut the same way in the
    data viewer and in grading. On top of it: a model that thinks again after its first block answers after the
    last `</think>`, and a block re-opened and never closed means the answer was not reached."""
    reasoning, answer, status = _split_response(text or "")
    while THINK_CLOSE in answer:  # each pass consumes one </think>, so this ends
        more, answer, _ = _split_response(answer)
        reasoning = f"{reasoning}\n{more}".strip()
    if THINK_OPEN in answer:
        before, _, after = answer.partition(THINK_OPEN)
        return ThinkSplit(f"{reasoning}\n{after}".strip(), before.strip(), THINK_UNCLOSED)
    return ThinkSplit(reasoning, answer, status)


def strip_think(text: str) -> str:
    """The answer part of a response: text after the think block, or "" when the block never closed."""
    split = split_think(text)
    return "" if split.status == THINK_UNCLOSED else split.answer


# ---------------------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------------------

Method = Literal["boxed", "####", "answer_is", "last_number"]


@dataclass(frozen=True)
class Extraction:
    """The final answer found in a response, how it was found, and whether the response was cut before it."""

    value: str | None
    method: Method | None
    truncated: bool = False


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|(?<![a-z])(?:final\s+)?answer\s*:)[\s:*]*(.+)",
    re.IGNORECASE,
)
# Thousands-grouped numbers first, so "1,234" is one number; a minus only where it cannot be a binary minus.
_NUMBER = re.compile(r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+/\d+|\d+(?:\.\d+)?|\.\d+)")
_LEADING_NUMBER = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+/\d+|\d+(?:\.\d+)?|\.\d+)")


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at `text[start]`, or None if it never closes (cut-off response)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _last_boxed(text: str) -> str | None:
    """The last complete, non-empty `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`) in `text`."""
    for match in reversed(list(_BOXED.finditer(text))):
        end = match.end()
        if end < len(text) and text[end] == "{":
            content = _braced(text, end)
        else:  # "\boxed 5": the argument is the next token
            token = re.match(r"[^\s$]+", text[end:])
            content = token.group(0) if token and match.group(0).endswith(" ") else None
        if content and content.strip():
            return content.strip()
    return None


def _clean_phrase(raw: str) -> str | None:
    """Cut the answer out of the text after "the answer is": a math span, a leading number, or the sentence."""
    s = raw.strip().strip("*").strip()
    math_span = re.match(r"^(\$\$?|\\\(|\\\[)(.+?)(\$\$?|\\\)|\\\])", s)
    if math_span:
        return math_span.group(2).strip()
    number = _LEADING_NUMBER.match(s)
    if number:
        return number.group(0)
    sentence = re.split(r"\.(?:\s|$)", s, maxsplit=1)[0].strip().strip("*").strip()
    return sentence or None


def extract_answer(response: str) -> Extraction:
    """Find the final answer of a response (see the module docstring for the order of the rules)."""
    split = split_think(response)
    if split.status == THINK_UNCLOSED:
        return Extraction(None, None, truncated=True)
    text = split.answer
    boxed = _last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    hashes = _HASHES.findall(text)
    if hashes and hashes[-1].strip():
        return Extraction(hashes[-1].strip(), "####")
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        value = _clean_phrase(match.group(1))
        if value:
            return Extraction(value, "answer_is")
    numbers = _NUMBER.findall(text)
    if numbers:
        return Extraction(numbers[-1], "last_number")
    return Extraction(None, None)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and comparison
# ---------------------------------------------------------------------------------------------------------------

# Commands whose argument is kept and whose name is dropped: \text{cm} -> cm.
_UNWRAP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_DROP = [r"\\left", r"\\right", r"\^\s*\{\s*\\circ\s*\}", r"\^\s*\\circ", r"\\circ", r"\\!", r"\\,", r"\\;",
         r"\\:", r"\\ ", r"\\displaystyle", r"\\%", r"%", r"\$"]
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def normalize_answer(s: str | None) -> str:
    """Canonical string form of an answer, for exact comparison. Never raises; None becomes ""."""
    if s is None:
        return ""
    s = str(s).strip()
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s)
    # Units after a number, written MATH-style with a space inside the braces: "5\text{ cm}" -> "5".
    s = re.sub(r"(\d)\s*\\(?:text|mbox|mathrm)\{\s+[a-zA-Z][a-zA-Z^ ]*\}$", r"\1", s)
    for _ in range(3):  # nested \text{\textbf{x}}
        s = _UNWRAP.sub(r"\1", s)
    for pattern in _DROP:
        s = re.sub(pattern, "", s)
    s = s.replace("{,}", "").replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\sqrt\s*(\d+)", r"\\sqrt{\1}", s)
    s = re.sub(r"^[a-zA-Z]\s*=\s*(?=\S)", "", s.strip())  # "x = 5" -> "5"
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"^\((-?\d+(?:\.\d+)?)\)$", r"\1", s)  # AIME-style "(073)"; tuples keep their commas
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s


_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")
_SLASH = re.compile(r"^(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)$")


def parse_number(s: str | None) -> float | None:
    """The value of a normalised answer that is a plain number, `a/b` or `\\frac{a}{b}`; None otherwise."""
    s = normalize_answer(s)
    try:
        return float(Fraction(s))  # ints, decimals, "3/4"
    except (ValueError, ZeroDivisionError):
        pass
    frac, slash = _FRAC.match(s), _SLASH.match(s)
    try:
        if frac:
            sign = -1.0 if frac.group(1) else 1.0
            return sign * float(Fraction(frac.group(2)) / Fraction(frac.group(3)))
        if slash:
            return float(Fraction(slash.group(1)) / Fraction(slash.group(2)))
    except ZeroDivisionError:
        return None
    return None


def answers_match(predicted: str | None, reference: str | None, *, rel_tol: float = 1e-6) -> bool:
    """True when two answers are equal after normalisation, or equal as numbers (exactly for integers, within
    `rel_tol` otherwise, so 0.3333333 matches 1/3 but 0.33 does not)."""
    a, b = normalize_answer(predicted), normalize_answer(reference)
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return False
    if x.is_integer() and y.is_integer():  # integers are exact: 1000000 is not 1000001 at any relative tolerance
        return x == y
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9)


class Outcome(StrEnum):
    """How one response scored. Every outcome but CORRECT counts as wrong in accuracy; TRUNCATED and MALFORMED
    are also counted apart so a reader sees runaway reasoning and broken formats."""

    CORRECT = "correct"
    WRONG = "wrong"
    TRUNCATED = "truncated"  # cut at max_new_tokens before an explicit final answer
    MALFORMED = "malformed"  # stopped on end-of-turn inside an unclosed think block: the answer never came
    NO_ANSWER = "no_answer"  # finished, but no answer could be read


def grade_response(response: str, reference: str, *, finished: bool = True,
                   benchmark: str = "") -> tuple[Outcome, MathGrade | None]:
    """Grade one response: the outcome, and Math-Verify's verdict with what it extracted (None when the answer
    part was never reached).

    `finished=False` means generation stopped at the token limit. Then only an explicit final answer (boxed, ####,
    "the answer is") after a closed think block is graded: the last number of a cut-off text is a step of the
    reasoning, not its answer. An unclosed think block is TRUNCATED when cut at the limit and MALFORMED when the
    model stopped by itself. The answer part (after the last `</think>`) is what Math-Verify reads."""
    return grade_responses([response], [reference], finished=[finished], benchmark=benchmark)[0]


def _before_math(response: str, finished: bool) -> Outcome | None:
    """The outcome decided without Math-Verify (truncated / malformed), or None when the answer must be graded."""
    found = extract_answer(response)
    if found.truncated:
        return Outcome.MALFORMED if finished else Outcome.TRUNCATED
    if not finished and found.method not in ("boxed", "####", "answer_is"):
        return Outcome.TRUNCATED
    return None


def grade_responses(responses: list[str], references: list[str], *, finished: list[bool],
                    benchmark: str = "") -> list[tuple[Outcome, MathGrade | None]]:
    """`grade_response` for a batch: one call into the math grader for all of them (one child process when
    called off the main thread, see `dgr_core.evaluate.mathgrade`)."""
    early = [_before_math(r, f) for r, f in zip(responses, finished, strict=True)]
    todo = [i for i, e in enumerate(early) if e is None]
    grades = dict(zip(todo, grade_many([(strip_think(responses[i]), str(references[i]), benchmark) for i in todo]),
                      strict=True))
    out: list[tuple[Outcome, MathGrade | None]] = []
    for i, outcome in enumerate(early):
        if outcome is not None:
            out.append((outcome, None))
            continue
        grade = grades[i]
        verdict = Outcome.CORRECT if grade.correct else (
            Outcome.NO_ANSWER if grade.error == "no answer parsed" else Outcome.WRONG)
        out.append((verdict, grade))
    return out


def is_correct(response: str, reference: str, *, finished: bool = True, benchmark: str = "") -> Outcome:
    """The outcome of `grade_response` (Math-Verify with the dataset rules of `dgr_core.evaluate.mathgrade`)."""
    return grade_response(response, reference, finished=finished, benchmark=benchmark)[0]
