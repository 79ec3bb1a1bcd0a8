"""Filters on each rewrite: small pure functions returning `(ok, reason)`; a failed rewrite falls back to the
original sample and keeps the reason.

A reason reads `code: detail` (e.g. `too_long: 14.2x the original (max 10)`); `reason_code` gives the code, which
the job counts. The codes and what they mean are in `REASONS`.

- `check_well_formed`: a closed think block when one is expected, a non-empty answer, not cut at the token limit,
  no degenerate repetition (share of repeated word n-grams above `max_repeat_share`).
- `check_refusal_kept`: the keyword refusal detector (dgr_core.evaluate.refusal) gives the same decision on the
  original and the rewrite: a refusal must stay a refusal, and a compliant answer must not turn into one.
- `check_length`: rewrite length / original length (characters of reasoning + answer) within [min, max].
- `check_judge`: an optional judge model's safe/unsafe verdicts (Llama-Guard style): a rewrite judged unsafe
  where the original was not fails, and so does a verdict the judge did not give (fail closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from dgr_core.config import Config
from dgr_core.data.schema import THINK_EMPTY, THINK_MISSING, THINK_UNCLOSED
from dgr_core.data.think import join_think
from dgr_core.evaluate.refusal import detect_refusal

KEYWORDS = "keywords"
Check = tuple[bool, str]
OK: Check = (True, "")

REASONS = {
    "empty_prompt": "the sample has no prompt, so nothing was generated",
    "truncated": "the rewrite was cut at the token limit (max_new_tokens)",
    "no_think": "no <think>...</think> block although one is expected",
    "unclosed_think": "the think block was never closed",
    "empty_reasoning": "the think block is empty",
    "empty_answer": "no answer after the reasoning",
    "repetition": "degenerate repetition (the same word n-grams over and over)",
    "refusal_lost": "the original refuses but the rewrite does not",
    "refusal_added": "the original complies but the rewrite refuses",
    "too_short": "much shorter than the original",
    "too_long": "much longer than the original",
    "judge_unsafe": "the judge model calls the rewrite unsafe (the original was not)",
    "judge_no_verdict": "the judge model gave neither 'safe' nor 'unsafe'",
    "missing_delimiters": "no <rewritten_...> block after the model's thinking (or one never closed)",
    "doubled_delimiters": "a <rewritten_...> block written more than once",
    "nested_delimiters": "a delimiter or think tag inside a <rewritten_...> block",
    "nested_think": "think tags inside the model's own thinking",
}


@dataclass(frozen=True)
class FilterConfig(Config):
    """Which rewrites are kept. A rewrite failing any check falls back to the original sample."""

    section: ClassVar[str] = "filters"

    expect_think: bool = True  # require a closed, non-empty <think> block (turn off for non-reasoning models)
    min_length_ratio: float = 0.2  # rewrite chars / original chars, lower bound (0 = none)
    max_length_ratio: float = 20.0  # upper bound; short stubs (DirectRefusal) legitimately grow a lot
    max_repeat_share: float = 0.5  # share of repeated word 4-grams above which a rewrite is degenerate
    refusal_must_match: bool = True  # same refusal decision (keyword detector) on original and rewrite
    judge: str = KEYWORDS  # "keywords" (no model) or a HF id / folder of a Llama-Guard-style safety judge

    @property
    def uses_judge_model(self) -> bool:
        return bool(self.judge) and self.judge != KEYWORDS


@dataclass(frozen=True)
class Rewrite:
    """One parsed rewrite: the parts the refined row gets, and how the generation ended."""

    reasoning: str
    answer: str
    think_status: str
    finish_reason: str  # "stop" or "length" (any step cut at the limit counts)
    raw: str


def reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def fail(code: str, detail: str = "") -> Check:
    return False, f"{code}: {detail}" if detail else code


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """1 - distinct/total word n-grams: 0 for text that never repeats itself, near 1 for a loop."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def check_well_formed(rw: Rewrite, *, expect_think: bool, max_repeat_share: float = 0.5) -> Check:
    if rw.finish_reason == "length":
        return fail("truncated")
    if expect_think:
        if rw.think_status == THINK_MISSING:
            return fail("no_think")
        if rw.think_status == THINK_UNCLOSED:
            return fail("unclosed_think")
        if rw.think_status == THINK_EMPTY or not rw.reasoning.strip():
            return fail("empty_reasoning")
    if not rw.answer.strip():
        return fail("empty_answer")
    share = repeated_ngram_share(f"{rw.reasoning}\n{rw.answer}")
    if share > max_repeat_share:
        return fail("repetition", f"{share:.0%} of word 4-grams repeat (max {max_repeat_share:.0%})")
    return OK


def is_refusal(reasoning: str, answer: str) -> bool:
    """The keyword detector on a full response (it judges the answer part)."""
    return detect_refusal(join_think(reasoning or "", answer or "")).refused


def check_refusal_kept(original_refused: bool, rw: Rewrite) -> Check:
    rewrite_refused = is_refusal(rw.reasoning, rw.answer)
    if original_refused and not rewrite_refused:
        return fail("refusal_lost")
    if rewrite_refused and not original_refused:
        return fail("refusal_added")
    return OK


def response_length(reasoning: str, answer: str) -> int:
    return len((reasoning or "").strip()) + len((answer or "").strip())


def check_length(original_chars: int, rw: Rewrite, *, min_ratio: float, max_ratio: float) -> Check:
    if original_chars <= 0:  # a prompt-only sample (self mode) has nothing to compare with
        return OK
    ratio = response_length(rw.reasoning, rw.answer) / original_chars
    if min_ratio > 0 and ratio < min_ratio:
        return fail("too_short", f"{ratio:.2f}x the original (min {min_ratio:g})")
    if max_ratio > 0 and ratio > max_ratio:
        return fail("too_long", f"{ratio:.1f}x the original (max {max_ratio:g})")
    return OK


def check_judge(original_verdict: str, rewrite_verdict: str) -> Check:
    """Verdicts are "safe", "unsafe" or "unknown" (see engine.guard_label)."""
    if rewrite_verdict == "unknown":
        return fail("judge_no_verdict")
    if rewrite_verdict == "unsafe" and original_verdict != "unsafe":
        return fail("judge_unsafe")
    return OK


def run_filters(rw: Rewrite, *, original_reasoning: str, original_answer: str, cfg: FilterConfig) -> Check:
    """Every enabled check in order (cheapest and most telling first); the first failure is the reason."""
    original_chars = response_length(original_reasoning, original_answer)
    ok, why = check_well_formed(rw, expect_think=cfg.expect_think, max_repeat_share=cfg.max_repeat_share)
    # A prompt-only sample (self mode) has no original decision to keep.
    if ok and cfg.refusal_must_match and original_chars:
        ok, why = check_refusal_kept(is_refusal(original_reasoning, original_answer), rw)
    if ok:
        ok, why = check_length(original_chars, rw, min_ratio=cfg.min_length_ratio, max_ratio=cfg.max_length_ratio)
    return ok, why

