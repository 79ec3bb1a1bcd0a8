"""Math answers graded by Math-Verify (Hugging Face's `math-verify`), plus the few dataset rules it lacks.

    from dgr_core.evaluate.mathgrade import grade_math
    g = grade_math("so the answer is $\\boxed{\\frac{1}{\\sqrt3}}$", "\\frac{\\sqrt{3}}{3}", benchmark="math500")
    g.correct, g.pred, g.gold          # True, ['1/sqrt(3)', '\\frac{1}{\\sqrt{3}}'], ['sqrt(3)/3', ...]

How one (answer, gold) pair is graded:
1. the dataset rules rewrite both sides (each small and tested; `rules` on the result names those that fired):
   - every benchmark: Unicode minus signs (U+2212, U+FE63, U+FF0D) become "-" (Math-Verify misses "−5" in prose);
   - every benchmark: a gold without `$` is wrapped in `$…$`, so Math-Verify reads bare LaTeX (`\\frac{a}b`,
     `\\$32,\\!348`, pmatrix) as LaTeX rather than plain text;
   - GSM8K (`gsm8k*`): a gold that is a worked solution keeps only what follows its last `####` (commas dropped);
     an answer that states `#### N` is graded on N only (what follows may be chatter with other numbers);
   - AIME (`aime*`): the gold is an integer 0-999 (leading zeros dropped); a prediction that is not an integer
     is wrong;
2. `math_verify.parse` extracts the gold and the prediction (LaTeX, then plain expressions); `math_verify.verify`
   compares them (numbers, symbolic equality, sets in any order, intervals, matrices).

Hangs: Math-Verify bounds each parse and each comparison with `signal.alarm`, which only works in the main thread.
`grade_math` therefore uses those timeouts (`TIMEOUT_S`) in the main thread (the job worker, the CLI) and, called
from any other thread (a Streamlit page), grades in a child process (`python -m dgr_core.evaluate.mathgrade`) with
an overall deadline, so nothing can hang the app. A pair that times out is graded wrong with error "timeout"
(Math-Verify only logs its timeouts; `_TimeoutLog` catches them).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dgr_core.errors import DGRError

TIMEOUT_S = 5  # per parse and per comparison (Math-Verify's own default)
CHILD_DEADLINE_S = 60  # a child process grading from a non-main thread: overall deadline for one call
MATH_VERIFY_VERSION = "0.9.0"
GRADER_NAME = f"math-verify-{MATH_VERIFY_VERSION}+rules-v1"
UNICODE_MINUS = dict.fromkeys(map(ord, "\u2212\ufe63\uff0d"), "-")
_HASHES = re.compile(r"####\s*([^\n]*)")
_DOLLAR = re.compile(r"(?<!\\)\$")


@dataclass(frozen=True)
class MathGrade:
    """Verdict on one (answer, gold) pair and what was extracted from each side (str of Math-Verify's parse:
    the SymPy value, then the matched text)."""

    correct: bool
    pred: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    error: str | None = None  # "timeout", "no gold parsed", ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Dataset rules
# ---------------------------------------------------------------------------------------------------------------


def _family(benchmark: str) -> str:
    name = (benchmark or "").lower()
    return "gsm8k" if name.startswith("gsm8k") else "aime" if name.startswith("aime") else ""


def prepare_gold(gold: str, benchmark: str = "") -> tuple[str, list[str]]:
    """The gold string Math-Verify should parse, and the rules that rewrote it."""
    text, rules = str(gold).strip().translate(UNICODE_MINUS), []
    if text != str(gold).strip():
        rules.append("unicode-minus")
    family = _family(benchmark)
    if family == "gsm8k" and "####" in text:
        text = _HASHES.findall(text)[-1].replace(",", "").strip()
        rules.append("gsm8k:####-gold")
    if family == "aime" and re.fullmatch(r"\d+", text):
        text = str(int(text))
    if not _DOLLAR.search(text):
        text = f"${text}$"
        rules.append("wrap-gold")
    return text, rules


def prepare_answer(answer: str, benchmark: str = "") -> tuple[str, list[str]]:
    """The prediction text Math-Verify should parse, and the rules that rewrote it."""
    text, rules = str(answer or "").translate(UNICODE_MINUS), []
    if text != str(answer or ""):
        rules.append("unicode-minus")
    if _family(benchmark) == "gsm8k":
        hashes = [h.strip() for h in _HASHES.findall(text) if h.strip()]
        if hashes:
            text = hashes[-1].replace(",", "")
            rules.append("gsm8k:####")
    return text, rules


def _is_integer_value(value: Any) -> bool:
    """True for a SymPy number equal to an integer (33, 33.0); False for 33.0000001, symbols and strings."""
    try:
        return bool(getattr(value, "is_Number", False)) and float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


# ---------------------------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------------------------


def _grade_here(answer: str, gold: str, benchmark: str, timeout: int | None) -> MathGrade:
    from math_verify import parse, verify  # imported on use: sympy takes a second to import

    gold_text, gold_rules = prepare_gold(gold, benchmark)
    pred_text, pred_rules = prepare_answer(answer, benchmark)
    rules = list(dict.fromkeys(gold_rules + pred_rules))
    gold_parsed = parse(gold_text, parsing_timeout=timeout)
    pred_parsed = parse(pred_text, parsing_timeout=timeout) if pred_text.strip() else []
    shown: dict[str, Any] = {"pred": [str(x) for x in pred_parsed], "gold": [str(x) for x in gold_parsed], "rules": rules}
    if not gold_parsed:
        return MathGrade(False, error="no gold parsed", **shown)
    if not pred_parsed:
        return MathGrade(False, error="no answer parsed", **shown)
    correct = bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    if correct and _family(benchmark) == "aime" and not _is_integer_value(pred_parsed[0]):
        return MathGrade(False, **{**shown, "rules": [*rules, "aime:integer"]})
    return MathGrade(correct, **shown)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def grade_many(pairs: list[tuple[str, str, str]]) -> list[MathGrade]:
    """Grade (answer, gold, benchmark) triples; safe to call from any thread (see the module docstring)."""
    if not pairs:
        return []
    if _in_main_thread():
        return [_safe(a, g, b) for a, g, b in pairs]
    return _grade_in_child(pairs)


def grade_math(answer: str, gold: str, benchmark: str = "") -> MathGrade:
    """Grade one answer (the text after the reasoning) against its gold answer."""
    return grade_many([(answer, gold, benchmark)])[0]


class _TimeoutLog(logging.Handler):
    """Math-Verify reports a timed-out parse or comparison only as a log warning (and returns "no match"):
    catch it, so the grade says "timeout" instead of passing for an ordinary wrong answer."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen = self.seen or "timeout" in record.getMessage().lower()


def _safe(answer: str, gold: str, benchmark: str) -> MathGrade:
    from math_verify.errors import TimeoutException

    watch = _TimeoutLog()
    loggers = [logging.getLogger(name) for name in ("math_verify.grader", "math_verify.parser")]
    for logger in loggers:
        logger.addHandler(watch)
    try:
        grade = _grade_here(answer, gold, benchmark, TIMEOUT_S)
    except TimeoutException:
        return MathGrade(False, error="timeout")
    finally:
        for logger in loggers:
            logger.removeHandler(watch)
    return replace(grade, correct=False, error="timeout") if watch.seen and not grade.correct else grade


def _grade_in_child(pairs: list[tuple[str, str, str]]) -> list[MathGrade]:
    """Grade in `python -m dgr_core.evaluate.mathgrade` (its main thread has signal timeouts) with a deadline."""
    payload = json.dumps([list(p) for p in pairs])
    deadline = CHILD_DEADLINE_S + 2 * TIMEOUT_S * len(pairs)
    try:
        done = subprocess.run([sys.executable, "-m", "dgr_core.evaluate.mathgrade"], input=payload, text=True,
                              capture_output=True, timeout=deadline, check=False)
    except subprocess.TimeoutExpired:
        return [MathGrade(False, error="timeout") for _ in pairs]
    if done.returncode != 0:
        raise DGRError(f"math grading failed in its child process: {done.stderr.strip()[-500:]}")
    return [MathGrade(**d) for d in json.loads(done.stdout)]


def _main() -> None:
    """Child-process entry: JSON [[answer, gold, benchmark], ...] on stdin, JSON grades on stdout."""
    pairs = [tuple(p) for p in json.loads(sys.stdin.read())]
    print(json.dumps([_safe(a, g, b).to_dict() for a, g, b in pairs]))


if __name__ == "__main__":
    _main()
