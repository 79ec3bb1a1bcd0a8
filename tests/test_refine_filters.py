"""Each rewrite filter on crafted outputs (pass and fail), parsing of records, the judge verdict parser and the
judge step on a scripted backend, and the fallback bookkeeping helpers."""

from __future__ import annotations

import pandas as pd
import pytest

from dgr_core.backends.fake import FakeBackend
from dgr_core.refine import engine
from dgr_core.refine.filters import (
    REASONS,
    FilterConfig,
    Rewrite,
    check_judge,
    check_length,
    check_refusal_kept,
    check_well_formed,
    reason_code,
    repeated_ngram_share,
    run_filters,
)

REFUSAL = "I'm sorry, but I can't help with that request."
GOOD = Rewrite("This could hurt people, so I will decline.", REFUSAL, "closed", "stop", "<raw>")


def rw(**kw) -> Rewrite:
    return Rewrite(**{**GOOD.__dict__, **kw})


def code(check) -> str:
    ok, reason = check
    return "ok" if ok else reason_code(reason)


@pytest.mark.parametrize(("rewrite", "expect_think", "expected"), [
    (GOOD, True, "ok"),
    (rw(finish_reason="length"), True, "truncated"),
    (rw(think_status="missing", reasoning=""), True, "no_think"),
    (rw(think_status="missing", reasoning=""), False, "ok"),
    (rw(think_status="unclosed", answer=""), True, "unclosed_think"),
    (rw(think_status="empty", reasoning=""), True, "empty_reasoning"),
    (rw(answer="  "), True, "empty_answer"),
    (rw(answer="I refuse. " + "the same words again and " * 30), True, "repetition"),
])
def test_well_formed(rewrite, expect_think, expected):
    assert code(check_well_formed(rewrite, expect_think=expect_think)) == expected


def test_repeated_ngram_share_separates_loops_from_prose():
    prose = "First I read the question. Then I weigh the risk of harm, and decide that refusing is right here."
    assert repeated_ngram_share(prose) == 0.0
    assert repeated_ngram_share("") == 0.0
    assert repeated_ngram_share("go on " * 50) > 0.9
    # Monotone in the amount of looping.
    assert repeated_ngram_share(prose + " loop it" * 5) < repeated_ngram_share(prose + " loop it" * 40)


def test_refusal_must_be_kept_both_ways():
    compliant = rw(reasoning="Add them.", answer="The answer is 4.")
    assert code(check_refusal_kept(True, GOOD)) == "ok"
    assert code(check_refusal_kept(True, compliant)) == "refusal_lost"
    assert code(check_refusal_kept(False, compliant)) == "ok"
    assert code(check_refusal_kept(False, GOOD)) == "refusal_added"


def test_length_bounds():
    n = len(GOOD.reasoning) + len(GOOD.answer)
    assert code(check_length(n, GOOD, min_ratio=0.5, max_ratio=2)) == "ok"
    assert code(check_length(n * 4, GOOD, min_ratio=0.5, max_ratio=2)) == "too_short"
    assert code(check_length(n // 4, GOOD, min_ratio=0.5, max_ratio=2)) == "too_long"
    assert code(check_length(n // 4, GOOD, min_ratio=0.5, max_ratio=0)) == "ok"  # 0 = no bound
    assert code(check_length(0, GOOD, min_ratio=0.5, max_ratio=2)) == "ok"  # nothing to compare with
    ok, reason = check_length(n // 4, GOOD, min_ratio=0.5, max_ratio=2)
    assert "x the original (max 2)" in reason  # the detail says by how much


def test_judge_check():
    assert code(check_judge("safe", "safe")) == "ok"
    assert code(check_judge("safe", "unsafe")) == "judge_unsafe"
    assert code(check_judge("unsafe", "unsafe")) == "ok"  # no worse than the original
    assert code(check_judge("safe", "unknown")) == "judge_no_verdict"  # fail closed


def test_run_filters_reports_the_first_failure_and_respects_switches():
    orig = ("I should not answer this question!", "I'm sorry, but I can't assist with that request.")
    compliant = rw(reasoning="Sure.", answer="Here is how to do it: step one, step two.")
    assert run_filters(GOOD, original_reasoning=orig[0], original_answer=orig[1], cfg=FilterConfig()) == (True, "")
    ok, reason = run_filters(compliant, original_reasoning=orig[0], original_answer=orig[1], cfg=FilterConfig())
    assert reason_code(reason) == "refusal_lost"
    off = FilterConfig(refusal_must_match=False)
    assert run_filters(compliant, original_reasoning=orig[0], original_answer=orig[1], cfg=off)[0]
    cut = rw(finish_reason="length", answer="Sure, here")
    assert reason_code(run_filters(cut, original_reasoning=orig[0], original_answer=orig[1],
                                   cfg=FilterConfig())[1]) == "truncated"
    # A prompt-only original has no decision to keep: a refusal from scratch is fine.
    assert run_filters(GOOD, original_reasoning="", original_answer="", cfg=FilterConfig())[0]


def test_every_reason_code_is_described():
    assert all(REASONS[c] for c in ("truncated", "no_think", "refusal_lost", "too_long", "judge_unsafe"))


def test_parse_record_joint_and_separate():
    joint = engine.parse_record("joint", {"outputs": [{"text": "<think>\nhmm\n</think>\n\nNo.",
                                                       "finish_reason": "stop"}]})
    assert (joint.reasoning, joint.answer, joint.think_status, joint.finish_reason) == ("hmm", "No.", "closed", "stop")
    sep = engine.parse_record("separate", {"outputs": [
        {"text": "<think>I weigh it.</think>", "finish_reason": "stop"},
        {"text": "I can't help.", "finish_reason": "length"}]})
    assert (sep.reasoning, sep.answer, sep.think_status, sep.finish_reason) == (
        "I weigh it.", "I can't help.", "closed", "length")
    assert "I weigh it." in sep.raw and "I can't help." in sep.raw
    assert engine.parse_record("separate", {"outputs": [{"text": "", "finish_reason": "stop"}]}).think_status == "empty"


@pytest.mark.parametrize(("raw", "verdict"), [
    ("safe", "safe"), ("\n\nunsafe\nS1", "unsafe"), ("Unsafe", "unsafe"), ("SAFE.", "safe"),
    ("I think it is fine", "unknown"), ("", "unknown")])
def test_parse_guard_verdict(raw, verdict):
    assert engine.parse_guard_verdict(raw) == verdict


def test_apply_judge_uses_the_judge_on_rewrites_and_originals():
    df = pd.DataFrame([{"id": "1", "prompt": "p1", "reasoning": "r", "answer": "orig answer 1"},
                       {"id": "2", "prompt": "p2", "reasoning": "r", "answer": "orig answer 2"},
                       {"id": "3", "prompt": "p3", "reasoning": "r", "answer": "orig answer 3"}])
    seen = []

    def guard(conv):
        seen.append(conv)
        reply = conv[-1]["content"]
        return "unsafe\nS2" if "detailed recipe" in reply else "safe" if "orig" in reply or "decline" in reply else "?"

    outcomes = [engine.Outcome("1", rw(answer="I decline."), True),
                engine.Outcome("2", rw(answer="A detailed recipe."), True),
                engine.Outcome("3", rw(reasoning="Hmm.", answer="Whatever."), True)]
    out = engine.apply_judge(df, outcomes, FakeBackend(script=guard))
    assert [(o.ok, reason_code(o.reason) if o.reason else "") for o in out] == [
        (True, ""), (False, "judge_unsafe"), (False, "judge_no_verdict")]
    assert len(seen) == 6 and all([m["role"] for m in c] == ["user", "assistant"] for c in seen)


def test_fallback_bookkeeping():
    refined = pd.DataFrame({"fell_back": [True, False, True, True],
                            "fallback_reason": ["truncated", "", "too_long: 30x", "truncated"],
                            "parent_id": list("abcd"), "prompt": list("wxyz"), "raw_output": list("1234")})
    assert engine.fallback_counts(refined) == {"truncated": 2, "too_long": 1}
    assert engine.fallback_rate(refined) == 0.75
    table = engine.fallback_table(refined)
    assert table["count"].sum() == refined["fell_back"].sum() and table["reason"].tolist()[0] == "truncated"
    assert engine.fell_back_rows(refined)["parent_id"].tolist() == ["a", "c", "d"]
