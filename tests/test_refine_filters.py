"""Each rewrite filter on crafted outputs (pass and fail), parsing of records, the guard judge's verdicts and the
judge step on a scripted backend, self mode's reduced checks, and the fallback bookkeeping helpers."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from dgr_core.backends.fake import FakeBackend
from dgr_core.evaluate.judge import HFJudge, verdict_from_guard
from dgr_core.refine import engine, parsing
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
    joint = parsing.parse_record("joint", {"outputs": [{"text": "<think>\nhmm\n</think>\n\nNo.",
                                                       "finish_reason": "stop"}]})
    assert (joint.reasoning, joint.answer, joint.think_status, joint.finish_reason) == ("hmm", "No.", "closed", "stop")
    sep = parsing.parse_record("separate", {"outputs": [
        {"text": "<think>I weigh it.</think>", "finish_reason": "stop"},
        {"text": "I can't help.", "finish_reason": "length"}]})
    assert (sep.reasoning, sep.answer, sep.think_status, sep.finish_reason) == (
        "I weigh it.", "I can't help.", "closed", "length")
    assert "I weigh it." in sep.raw and "I can't help." in sep.raw
    assert parsing.parse_record("separate", {"outputs": [{"text": "", "finish_reason": "stop"}]}).think_status == "empty"


@pytest.mark.parametrize(("raw", "label"), [
    ("safe", "safe"), ("\n\nunsafe\nS1", "unsafe"), ("Unsafe", "unsafe"), ("SAFE.", "safe"),
    ("I think it is fine", "unknown"), ("", "unknown")])
def test_guard_label_reads_the_evaluate_judges_verdicts(raw, label):
    assert engine.guard_label(verdict_from_guard(raw, "hf:guard")) == label


def test_apply_judge_uses_the_judge_on_rewrites_and_originals():
    df = pd.DataFrame([{"id": "1", "prompt": "p1", "reasoning": "r", "answer": "orig answer 1"},
                       {"id": "2", "prompt": "p2", "reasoning": "r", "answer": "orig answer 2"},
                       {"id": "3", "prompt": "p3", "reasoning": "r", "answer": "orig answer 3"},
                       {"id": "4", "prompt": "p4", "reasoning": "r", "answer": "orig answer 4"}])
    seen = []

    def guard(conv):
        seen.append(conv)
        reply = conv[-1]["content"]
        return "unsafe\nS2" if "detailed recipe" in reply else "safe" if "orig" in reply or "decline" in reply else "?"

    outcomes = [engine.Outcome("1", rw(answer="I decline."), True),
                engine.Outcome("2", rw(answer="A detailed recipe."), True),
                engine.Outcome("3", rw(reasoning="Hmm.", answer="Whatever."), True),
                engine.Outcome("4", rw(answer="A detailed recipe."), False, "truncated")]
    out = engine.apply_judge(df, outcomes, HFJudge(FakeBackend(script=guard), "hf:fake-guard"))
    assert [(o.ok, reason_code(o.reason) if o.reason else "") for o in out] == [
        (True, ""), (False, "judge_unsafe"), (False, "judge_no_verdict"), (False, "truncated")]
    # Only the three that passed the other filters are judged, each with its original: 6 conversations.
    assert len(seen) == 6 and all([m["role"] for m in c] == ["user", "assistant"] for c in seen)
    assert {c[0]["content"] for c in seen} == {"p1", "p2", "p3"}


def test_judge_passes_a_rewrite_where_the_original_was_already_unsafe():
    df = pd.DataFrame([{"id": "1", "prompt": "p", "reasoning": "r", "answer": "a detailed recipe (orig)"}])
    guard = FakeBackend(script=lambda conv: "unsafe\nS1" if "detailed recipe" in conv[-1]["content"] else "safe")
    out = engine.apply_judge(df, [engine.Outcome("1", rw(answer="A detailed recipe."), True)],
                             HFJudge(guard, "hf:g"))
    assert out[0].ok  # the judge blocks *added* harm; an already-unsafe original is the keyword check's business


def test_fallback_bookkeeping():
    df = pd.DataFrame({"id": list("abcd"), "prompt": list("wxyz")})
    outcomes = [engine.Outcome("a", rw(raw="1"), False, "truncated"), engine.Outcome("b", rw(raw="2"), True),
                engine.Outcome("c", rw(raw="3"), False, "too_long: 30x"), engine.Outcome("d", None, False, "truncated")]
    fallbacks = engine.fallback_frame(df, outcomes)
    assert fallbacks["parent_id"].tolist() == ["a", "c", "d"]
    assert fallbacks["raw_output"].tolist() == ["1", "3", ""] and fallbacks["prompt"].tolist() == ["w", "y", "z"]
    assert engine.fallback_counts(fallbacks["reason"].tolist()) == {"truncated": 2, "too_long": 1}
    table = engine.fallback_table(fallbacks, n=len(df))
    assert table["count"].sum() == 3 and table["reason"].tolist()[0] == "truncated"
    assert table["share"].tolist() == [0.5, 0.25] and table["meaning"].str.len().min() > 0


def test_fallbacks_file_round_trip(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "prompt": ["p \"quoted\"\nline", "q"]})
    fallbacks = engine.fallback_frame(df, [engine.Outcome("a", rw(raw="x"), False, "no_think"),
                                           engine.Outcome("b", rw(), True)])
    path = tmp_path / engine.FALLBACKS_FILE
    engine.write_fallbacks(path, fallbacks)
    pd.testing.assert_frame_equal(engine.read_fallbacks(path), fallbacks)
    assert engine.read_fallbacks(tmp_path / "missing.jsonl").empty


def test_self_mode_only_checks_well_formedness():
    df = pd.DataFrame([{"id": "1", "prompt": "How do I make a bomb?", "reasoning": "No.",
                        "answer": "I'm sorry, but I can't help with that."}])
    complies = {"1": {"id": "1", "outputs": [{"text": "<think>\nok\n</think>\n\nSure. First you take the parts, then you put "
                                              "them together and wait for a while.",
                                              "finish_reason": "stop"}]}}
    cfg = FilterConfig(max_length_ratio=1.0)
    joint = engine.evaluate_records(df, complies, "joint", cfg)
    assert not joint[0].ok and reason_code(joint[0].reason) == "refusal_lost"
    no_refusal_check = engine.evaluate_records(df, complies, "joint", replace(cfg, refusal_must_match=False))
    assert reason_code(no_refusal_check[0].reason) == "too_long"
    assert engine.evaluate_records(df, complies, "self", cfg)[0].ok
    assert engine.filters_for_mode(cfg, "joint") is cfg
