"""Benchmark: how often each refusal judge agrees with a human label, as confusion matrices on the labelled set
(`dgr_core/evaluate/data/refusal_labelled.jsonl`, see dgr_core.evaluate.judge_eval), and how the math grader
agrees with human verdicts on the realistic grading pairs (tests/data/grading_pairs.jsonl).

    .venv/bin/python benchmarks/bench_judges.py                              # keyword judge + fake-backend paths
    .venv/bin/python benchmarks/bench_judges.py --keyword-module OLD.py      # also an older keyword judge file
    .venv/bin/python benchmarks/bench_judges.py --guard meta-llama/Llama-Guard-3-1B --backend hf   # a real guard

Printed as Markdown, for benchmarks/RESULTS.md. Without --guard, the guard and StrongREJECT-rubric judges run on
the scripted fake backend: their matrices only show that the path (prompt -> model -> parse -> verdict) works, not
how good any real guard or grader is.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgr_core.backends.fake import FakeBackend  # noqa: E402
from dgr_core.evaluate.judge import HFJudge, StrongRejectJudge, make_judge  # noqa: E402
from dgr_core.evaluate.judge_eval import JudgeReport, load_labelled_set, measure_judge  # noqa: E402
from dgr_core.evaluate.refusal import KeywordJudge, RefusalVerdict  # noqa: E402


class _ModuleJudge:
    """A keyword judge from another file (e.g. an older refusal.py), for a before/after comparison."""

    def __init__(self, path: str):
        spec = importlib.util.spec_from_file_location("old_refusal", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["old_refusal"] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
        self.detect, self.judge_name = module.detect_refusal, module.KEYWORD_JUDGE_NAME

    def judge(self, prompts, responses) -> list[RefusalVerdict]:
        return [self.detect(r) for r in responses]


def _fake_guard(conv) -> str:
    """Scripted: 'unsafe' when the text it is shown contains step-like instructions."""
    text = conv[-1]["content"].lower()
    return "unsafe\nS2" if any(w in text for w in ("step 1", "step 2", "first,", "1. ")) else "safe"


def _fake_rubric(conv) -> str:
    text = conv[-1]["content"].split("AI model response:", 1)[-1].split("Evaluate the AI model", 1)[0].lower()
    leaked = any(w in text for w in ("step 1", "step 2", "first,", "1. "))
    return f"#scores\n1.a x\n1.b {0 if leaked else 1}\n2.a x\n2.b 4\n3.a x\n3.b 4"


def report_md(report: JudgeReport, note: str = "") -> str:
    c = report.confusion
    lines = [f"### `{report.judge}`{note}", "",
             f"n = {c['n']} · accuracy {c['accuracy']:.3f} · precision {c['precision']:.3f} · recall "
             f"{c['recall']:.3f} · F1 {c['f1']:.3f} (positive class: refused)", "",
             "| truth \\ judged | refused | complied |", "| --- | --- | --- |",
             f"| refused | {c['tp']} | {c['fn']} |", f"| complied | {c['fp']} | {c['tn']} |", "",
             "| category | label | n | correct |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.category} | {r.label} | {r.n} | {r.correct} |" for r in report.by_category.itertuples()]
    return "\n".join(lines) + "\n"


def grading_md() -> str:
    from math_verify import parse, verify

    from dgr_core.evaluate.extract import answers_match, extract_answer, grade_response, strip_think

    pairs = [json.loads(x) for x in (REPO / "tests/data/grading_pairs.jsonl").read_text().splitlines()]
    ours = sum((grade_response(p["output"], p["gold"], benchmark=p["benchmark"])[0] == "correct") is p["human"]
               for p in pairs)
    raw = sum((bool(strip_think(p["output"])) and verify(parse(f"${p['gold']}$"), parse(strip_think(p["output"]))))
              is p["human"] for p in pairs)
    old = 0
    for p in pairs:
        found = extract_answer(p["output"])
        old += (found.value is not None and answers_match(found.value, p["gold"])) is p["human"]
    return ("| grader | agrees with the human verdict |\n| --- | --- |\n"
            f"| answer-match-v1 (the old hand-written matcher) | {old}/{len(pairs)} |\n"
            f"| math-verify 0.9.0, gold wrapped in `$…$` | {raw}/{len(pairs)} |\n"
            f"| math-verify-0.9.0+rules-v1 (what evaluation uses) | {ours}/{len(pairs)} |\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keyword-module", action="append", default=[], help="an older refusal.py to compare")
    ap.add_argument("--guard", default=None, help="a real guard model to measure (loads it)")
    ap.add_argument("--rubric", default=None, help="a real chat model to grade with the StrongREJECT rubric")
    ap.add_argument("--backend", default="hf")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    labelled = load_labelled_set()
    print(f"Machine: {platform.node()} · Python {platform.python_version()} · commit {commit.strip()} · "
          f"{len(labelled.frame)} labelled responses (missing: {labelled.missing or 'none'})\n")
    for path in args.keyword_module:
        print(report_md(measure_judge(_ModuleJudge(path), labelled), f" (from {Path(path).name})"))
    print(report_md(measure_judge(KeywordJudge(), labelled)))
    fake_note = " — fake backend, scripted: shows the path works, NOT the quality of any guard"
    for part in ("answer", "both"):
        guard = HFJudge(FakeBackend(script=_fake_guard), f"hf:fake-guard[{part}]", part=part)
        print(report_md(measure_judge(guard, labelled), fake_note))
    rubric = StrongRejectJudge(FakeBackend(script=_fake_rubric), "strongreject-rubric:fake[both]")
    print(report_md(measure_judge(rubric, labelled), fake_note))
    for name in filter(None, (args.guard, f"strongreject:{args.rubric}" if args.rubric else None)):
        print(report_md(measure_judge(make_judge(name, backend=args.backend), labelled), " — real model"))
    print("## Math grading on the realistic pairs\n")
    print(grading_md())


if __name__ == "__main__":
    main()
