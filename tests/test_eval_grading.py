"""Math grading (dgr_core.evaluate.mathgrade) checked against its peer, Math-Verify, and against careful human
verdicts: 87 realistic (output, gold) pairs from MATH-500, AIME-24, GSM8K and the arithmetic set, including every
failure case of the old hand-written grader (`\\$` in golds, pmatrix, `\\frac{a}b`, units with `^2`, equivalent
forms, mixed numbers, root lists in another order); the 500 MATH-500 golds (vs themselves and vs a realistic
model-style rewrite); the thread-safe path; and `dgr grade`."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from math_verify import parse, verify

from dgr_core.cli import main
from dgr_core.evaluate.benchmarks import load_math500
from dgr_core.evaluate.extract import grade_response, strip_think
from dgr_core.evaluate.mathgrade import grade_many, prepare_answer, prepare_gold

PAIRS = [json.loads(line) for line in (Path(__file__).parent / "data" / "grading_pairs.jsonl").open()]
THINK = "<think>\nLet me work through this.\n</think>\n\n"


def _raw_math_verify(output: str, gold: str) -> bool:
    """Math-Verify as its documentation uses it: the gold wrapped in $…$, the answer part parsed whole."""
    answer = strip_think(output)
    return bool(answer) and verify(parse(f"${gold}$"), parse(answer))


def test_the_pair_set_is_realistic_and_covers_the_known_failures() -> None:
    notes = " ".join(p["note"] for p in PAIRS)
    golds = " ".join(p["gold"] for p in PAIRS)
    assert len(PAIRS) >= 85 and {p["benchmark"] for p in PAIRS} == {"math500", "aime24", "gsm8k100", "arithmetic"}
    assert all(s in golds for s in ("\\$", "pmatrix", "\\frac{270}7", "^2", "\\frac{\\sqrt{3}}{3}", "\\pm"))
    assert all(s in notes for s in ("mixed", "reordered", "Unicode minus", "####"))
    assert 0.2 < sum(not p["human"] for p in PAIRS) / len(PAIRS) < 0.5  # wrong answers too, not only right ones


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{p['benchmark']}:{p['note']}" for p in PAIRS])
def test_grader_agrees_with_the_human_verdict(pair) -> None:
    outcome, _ = grade_response(pair["output"], pair["gold"], benchmark=pair["benchmark"])
    assert (outcome == "correct") is pair["human"]


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{p['benchmark']}:{p['note']}" for p in PAIRS])
def test_grader_agrees_with_math_verify_except_where_a_dataset_rule_applies(pair) -> None:
    """Raw Math-Verify gets every pair right except the few a dataset rule exists for (marked needs_rule)."""
    ours = grade_response(pair["output"], pair["gold"], benchmark=pair["benchmark"])[0] == "correct"
    if not pair["needs_rule"]:
        assert ours is _raw_math_verify(pair["output"], pair["gold"])
    else:
        assert ours is pair["human"]


def _model_style(gold: str) -> str:
    """How a model typically writes a MATH gold: no `\\!`, `\\left`/`\\right`, `\\dfrac`, `\\$` or trailing unit."""
    s = re.sub(r"\\!\s*", "", gold).replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    s = s.replace("\\$", "").replace("^\\circ", "^{\\circ}")
    return re.sub(r"\\(?:text|mbox)\{\s+[a-zA-Z ]+\}(\^2)?$", "", s).strip()


def test_math500_golds_against_themselves_and_model_style_answers(shared_data) -> None:
    """Every MATH-500 gold is matched by a boxed copy of itself and by a model-style rewrite, and on each pair
    (and on a wrong pairing with the next item's gold) the grader gives Math-Verify's verdict."""
    golds = list(load_math500(shared_data / "LRM-Safety-Study/reasoning_evaluation/data/math500/math500.jsonl")
                 ["reference"])
    assert len(golds) == 500
    disagree, missed = [], []
    for i, gold in enumerate(golds):
        outputs = [f"{THINK}The final answer is $\\boxed{{{gold}}}$.", f"{THINK}So it is $\\boxed{{{_model_style(gold)}}}$."]
        if i % 5 == 0:
            outputs.append(f"{THINK}$\\boxed{{{golds[(i + 1) % len(golds)]}}}$")
        for j, out in enumerate(outputs):
            ours = grade_response(out, gold, benchmark="math500")[0] == "correct"
            if ours is not _raw_math_verify(out, gold):
                disagree.append((gold, out))
            if j < 2 and not ours:
                missed.append((gold, out))
    assert disagree == [] and missed == []


def test_dataset_rules() -> None:
    assert prepare_gold("\\frac{a}b") == ("$\\frac{a}b$", ["wrap-gold"])
    assert prepare_gold("$5$")[0] == "$5$"  # already LaTeX-delimited
    assert prepare_gold("\\$36")[0] == "$\\$36$"  # an escaped dollar is not a delimiter
    assert prepare_gold("text #### 1,234", "gsm8k100")[0] == "$1234$"
    assert prepare_gold("033", "aime24")[0] == "$33$"
    assert prepare_answer("\u22125")[0] == "-5"
    assert prepare_answer("#### 72\nstep 2 was hard", "gsm8k100") == ("72", ["gsm8k:####"])
    assert prepare_answer("#### 72", "math500")[0] == "#### 72"  # the GSM8K rule stays with GSM8K


def test_grading_from_a_thread_uses_a_child_process_and_agrees() -> None:
    """Math-Verify's timeouts use signal.alarm (main thread only); from another thread (a Streamlit page) the
    grader runs in a child process with a deadline and gives the same verdicts."""
    pairs = [(p["output"].split("</think>")[-1], p["gold"], p["benchmark"]) for p in PAIRS[:6]]
    here = grade_many(pairs)
    out: list = []
    worker = threading.Thread(target=lambda: out.append(grade_many(pairs)))
    worker.start()
    worker.join(120)
    assert out and out[0] == here


def test_dgr_grade_prints_the_verdict_and_both_extractions(capsys) -> None:
    code = main(["grade", "--benchmark", "math500", "--gold", "\\frac{\\sqrt3}{3}", "--output",
                 "<think>rationalise</think> so $\\boxed{\\frac{1}{\\sqrt3}}$"])
    text = capsys.readouterr().out
    assert code == 0 and "verdict: correct" in text
    assert "output -> ['1/sqrt(3)'" in text and "gold   -> ['sqrt(3)/3'" in text
    code = main(["grade", "--benchmark", "aime24", "--gold", "204", "--output", "<think>cut here", "--truncated",
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["verdict"] == "truncated" and report["extracted_output"] == []


def test_dgr_grade_reads_files(tmp_path, capsys) -> None:
    out = tmp_path / "out.txt"
    out.write_text(f"{THINK}#### 2,280\nThanks for step 3!", encoding="utf-8")
    assert main(["grade", "--benchmark", "gsm8k100", "--gold", "2280", "--output", f"@{out}"]) == 0
    assert "gsm8k:####" in capsys.readouterr().out
    assert main(["grade", "--gold", "1", "--output", "@/no/such/file"]) == 2


def test_a_pathological_answer_times_out_as_wrong_instead_of_hanging(monkeypatch) -> None:
    """Comparing against (10^10^10)! never finishes in SymPy: Math-Verify's timeout stops it, and the grade says
    so instead of passing for an ordinary wrong answer."""
    from dgr_core.evaluate import mathgrade

    monkeypatch.setattr(mathgrade, "TIMEOUT_S", 1)
    grade = mathgrade.grade_math("\\boxed{(10^{10^{10}})!}", "1")
    assert not grade.correct and grade.error == "timeout"
    assert mathgrade.grade_math("\\boxed{2}", "2").error is None  # the handler is gone afterwards
