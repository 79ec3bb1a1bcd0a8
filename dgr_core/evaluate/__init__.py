"""Evaluation primitives: answer extraction and grading (Math-Verify), refusal judging and its measurement, a
generated arithmetic set, paired statistics between runs, eval signatures for like-for-like joins, and benchmark
loaders.

Everything here is pure Python (numpy / scipy / pandas): no model code. A job generates responses with a backend,
then grades them with these functions:

    from dgr_core.evaluate import load_benchmark, is_correct, detect_refusal, mcnemar
    items = load_benchmark("math500")
    outcome = is_correct(response, items.reference[0], finished=True)   # CORRECT / WRONG / TRUNCATED / MALFORMED
    outcome, grade = grade_response(response, gold, benchmark="math500")  # + what Math-Verify extracted
    verdict = detect_refusal(response)                                   # RefusalVerdict(refused, matched, judge)
    mcnemar(vanilla_correct, refined_correct).p_value
"""

from dgr_core.evaluate.arithmetic import generate_arithmetic
from dgr_core.evaluate.benchmarks import (
    BENCHMARK_COLUMNS,
    BENCHMARKS,
    BenchmarkSpec,
    load_aime24,
    load_arithmetic,
    load_benchmark,
    load_benign_edgy,
    load_gsm8k100,
    load_jsonl_prompts,
    load_math500,
    load_strongreject,
    load_xstest,
    shared_data_dir,
)
from dgr_core.evaluate.extract import (
    Extraction,
    Outcome,
    ThinkSplit,
    answers_match,
    extract_answer,
    grade_response,
    is_correct,
    normalize_answer,
    parse_number,
    split_think,
    strip_think,
)
from dgr_core.evaluate.judge_eval import load_labelled_set, measure_judge
from dgr_core.evaluate.mathgrade import GRADER_NAME, MathGrade, grade_math
from dgr_core.evaluate.paired import (
    PairedResult,
    accuracy_with_ci,
    cluster_bootstrap_ci,
    mcnemar,
    paired_bootstrap,
    pass_at_k,
    wilson_interval,
)
from dgr_core.evaluate.refusal import (
    KEYWORD_JUDGE_NAME,
    KeywordJudge,
    RefusalJudge,
    RefusalVerdict,
    detect_refusal,
    refusal_rate,
)
from dgr_core.evaluate.signature import decoding_label, eval_signature, signature_of

__all__ = [
    "GRADER_NAME",
    "MathGrade",
    "cluster_bootstrap_ci",
    "decoding_label",
    "eval_signature",
    "grade_math",
    "grade_response",
    "load_labelled_set",
    "measure_judge",
    "pass_at_k",
    "signature_of",
    "wilson_interval",
    "BENCHMARKS",
    "BENCHMARK_COLUMNS",
    "KEYWORD_JUDGE_NAME",
    "BenchmarkSpec",
    "Extraction",
    "KeywordJudge",
    "Outcome",
    "PairedResult",
    "RefusalJudge",
    "RefusalVerdict",
    "ThinkSplit",
    "accuracy_with_ci",
    "answers_match",
    "detect_refusal",
    "extract_answer",
    "generate_arithmetic",
    "is_correct",
    "load_aime24",
    "load_arithmetic",
    "load_benchmark",
    "load_benign_edgy",
    "load_gsm8k100",
    "load_jsonl_prompts",
    "load_math500",
    "load_strongreject",
    "load_xstest",
    "mcnemar",
    "normalize_answer",
    "paired_bootstrap",
    "parse_number",
    "refusal_rate",
    "shared_data_dir",
    "split_think",
    "strip_think",
]
