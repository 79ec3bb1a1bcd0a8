"""Evaluation primitives: answer extraction and grading, refusal judging, a generated arithmetic set, paired
statistics between runs, and benchmark loaders.

Everything here is pure Python (numpy / scipy / pandas): no model code. A job generates responses with a backend,
then grades them with these functions:

    from dgr_core.evaluate import load_benchmark, is_correct, detect_refusal, mcnemar
    items = load_benchmark("math500")
    outcome = is_correct(response, items.reference[0], finished=True)   # Outcome.CORRECT / WRONG / TRUNCATED / ...
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
    is_correct,
    normalize_answer,
    parse_number,
    split_think,
    strip_think,
)
from dgr_core.evaluate.paired import PairedResult, accuracy_with_ci, mcnemar, paired_bootstrap
from dgr_core.evaluate.refusal import (
    KEYWORD_JUDGE_NAME,
    KeywordJudge,
    RefusalJudge,
    RefusalVerdict,
    detect_refusal,
    refusal_rate,
)

__all__ = [
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
