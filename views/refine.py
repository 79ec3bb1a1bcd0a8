"""Refine: the target model rewrites a safety dataset in its own words (DGR), failed rewrites fall back to the
original. Pick a dataset, a mode and a template (previewed on one sample), launch the job, watch it, read the
fallback table and open the Compare page on original vs refined."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dgr_core.backends.base import GenerationConfig
from dgr_core.config import default_of, help_of
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.jobs import manager
from dgr_core.jobs.results import RefineResult, ResultError
from dgr_core.models.loading import ModelSpec
from dgr_core.refine import engine
from dgr_core.refine.filters import KEYWORDS, FilterConfig
from dgr_core.refine.job import RefineConfig, validate
from dgr_core.refine.templates import MODES, default_template, preview
from dgr_ui.common import current_backend, current_model, show_error, workspace
from dgr_ui.jobs import job_panel, launch
from dgr_ui.state import COMPARE_A, COMPARE_B

REFINE_GEN = default_of(RefineConfig, "generation")  # the refine defaults (max_new_tokens 512)

KEY = "refine"
MODE_HELP = {
    "joint": "one generation: the model restates reasoning and answer together (<think>…</think> then answer)",
    "separate": "two generations: the reasoning first, then the answer seeing the rewritten reasoning",
    "self": "the model answers the prompt from scratch: the reference for its own distribution",
}


@st.cache_resource(show_spinner=False, max_entries=4)
def _tokenizer(ref: str, revision: str | None, backend: str, root: str):
    from dgr_core.workspace import Workspace

    return engine.preview_tokenizer(ModelSpec(ref, revision=revision), backend, Workspace(Path(root)))


def _reset_template(mode: str) -> None:
    st.session_state[f"refine_template_{mode}"] = default_template(mode)


def pick_dataset(store: DatasetStore) -> str | None:
    names = [i.name for i in store.list()]
    if not names:
        st.info("No datasets yet: import one on the Datasets page (or run `dgr prepare` for the demo sets).")
        return None
    default = names.index("demo-external-refusal") if "demo-external-refusal" in names else 0
    return st.selectbox("Dataset to refine", names, index=default, key="refine_dataset")


def template_editor(mode: str) -> str:
    key = f"refine_template_{mode}"  # one text per mode: switching modes never loses an edit
    if key not in st.session_state:
        st.session_state[key] = default_template(mode)
    template = st.text_area("Prompt template", key=key, height=300,
                            help="Placeholders: {prompt}, {reasoning}, {answer}, {category}; separate mode has a "
                                 "second part after the line '=== ANSWER STEP ===' that may use "
                                 "{rewritten_reasoning}. Write {{ and }} for literal braces.")
    st.button("Reset to the default template", on_click=_reset_template, args=(mode,))
    return template


def show_preview(template: str, mode: str, df: pd.DataFrame, spec: ModelSpec, backend: str) -> None:
    with st.expander("Preview the filled prompt", expanded=False):
        ids = df["id"].astype(str).tolist()[:500]
        sample = st.selectbox("Sample", ids, key="refine_preview_id")
        row = df.iloc[ids.index(sample)].to_dict()
        tok, note = _tokenizer(spec.ref, spec.revision, backend, str(workspace().root))
        try:
            parts = preview(template, mode, row, tok)
        except DGRError as exc:
            st.caption(f"No preview: {exc}")
            return
        if note:
            st.caption(note)
        for part in parts:
            st.markdown(f"**{part.title}**" + (" · through the model's chat template" if tok is not None else ""))
            st.code(part.text, language="text", wrap_lines=True)


def generation_settings() -> GenerationConfig:
    cols = st.columns(5)
    return GenerationConfig(
        max_new_tokens=int(cols[0].number_input("Max new tokens", 1, 32768, REFINE_GEN.max_new_tokens, key="refine_max_new")),
        temperature=float(cols[1].number_input("Temperature", 0.0, 2.0, REFINE_GEN.temperature, 0.1, key="refine_temp",
                                               help="0 = greedy")),
        top_p=float(cols[2].number_input("Top-p", 0.01, 1.0, REFINE_GEN.top_p, 0.05, key="refine_top_p")),
        seed=int(cols[3].number_input("Seed", 0, 2**31 - 1, REFINE_GEN.seed, key="refine_seed")),
        batch_size=int(cols[4].number_input("Batch size", 1, 1024, REFINE_GEN.batch_size, key="refine_batch",
                                            help="prompts per generate call; also the resume checkpoint unit")))


FILTERS = FilterConfig()  # the defaults the widgets start at


def filter_settings(model_ref: str) -> FilterConfig:
    cols = st.columns(3)
    # Keyed per model: the default (on for reasoning models, off for the demo model) follows the sidebar's model.
    expect = cols[0].checkbox("Require a <think> block", engine.default_expect_think(model_ref),
                              key=f"refine_expect_think:{model_ref}",
                              help="off for models that do not reason in think tags (the demo model does not)")
    match = cols[0].checkbox("Keep the refusal decision", FILTERS.refusal_must_match, key="refine_refusal_match",
                             help="the keyword detector must agree on the original and the rewrite")
    lo = cols[1].number_input("Min length ratio", 0.0, 100.0, FILTERS.min_length_ratio, 0.05, key="refine_min_ratio",
                              help="rewrite chars / original chars; 0 = no bound")
    hi = cols[1].number_input("Max length ratio", 0.0, 1000.0, FILTERS.max_length_ratio, 1.0, key="refine_max_ratio",
                              help="0 = no bound; short stubs legitimately grow a lot")
    rep = cols[2].number_input("Max repeated 4-gram share", 0.05, 1.0, FILTERS.max_repeat_share, 0.05,
                               key="refine_repeat", help=help_of(FilterConfig, "max_repeat_share"))
    judge = cols[2].text_input("Judge", FILTERS.judge, key="refine_judge",
                               help="'keywords' (no model) or a Llama-Guard-style model id / folder: a rewrite "
                                    "it calls unsafe (where the original was not) falls back")
    return FilterConfig(expect_think=expect, min_length_ratio=float(lo), max_length_ratio=float(hi),
                        max_repeat_share=float(rep), refusal_must_match=match, judge=judge.strip() or KEYWORDS)


def build_config(dataset: str, mode: str, template: str, spec: ModelSpec, backend: str) -> RefineConfig:
    with st.expander("Generation", expanded=False):
        generation = generation_settings()
    with st.expander("Filters (a failed rewrite keeps the original sample)", expanded=False):
        if mode == "self":
            st.caption("Self mode applies only the well-formedness checks (think block, answer, token limit, "
                       "repetition) and drops a failed answer: the reference holds only the model's own text.")
        filters = filter_settings(spec.ref)
    cols = st.columns(3)
    limit = int(cols[0].number_input("Limit (first N samples, 0 = all)", 0, 10_000_000, 16, key="refine_limit"))
    default_name = engine.default_output_name(dataset, spec.ref, mode)
    output = cols[1].text_input("Output dataset", "", placeholder=default_name, key="refine_output")
    score = cols[2].checkbox("Score both sets afterwards", True, key="refine_score",
                             help="the output and the whole original dataset, with the loaded model and the "
                                  "Compare page's default settings, so Compare opens on cached scores (the "
                                  "original's scores are cached per model: a later run pays only for new rows)")
    return RefineConfig(dataset=dataset, model=spec, backend=backend, mode=mode, template=template,
                        generation=generation, filters=filters, output_name=output.strip(), limit=limit or None,
                        score_after=score)


def problems(cfg: RefineConfig) -> str | None:
    """The first thing to fix before launch (template, settings, dataset content), or None."""
    try:
        validate(cfg.to_dict())
    except DGRError as exc:
        return str(exc)
    return None


def show_result(run_dir: Path) -> None:
    """Figures, the fallback table and the failed samples of a finished run, and the way to the Compare page."""
    info = manager.get_run(workspace(), run_dir.name)
    try:
        result = info.result_as(RefineResult) if info.state == "done" else None
    except ResultError as exc:
        show_error(exc, "Refine result")
        return
    if result is None:
        return
    dropped = result.on_failure == "dropped"
    cols = st.columns(4)
    cols[0].metric("Samples", result.n)
    cols[1].metric("Dropped" if dropped else "Fell back", f"{result.n_fell_back} ({result.fallback_rate:.0%})")
    rate = result.samples_per_s
    cols[2].metric("Samples/s", f"{rate:.2f}" if rate else "–")
    cols[3].metric("Output", result.output_dataset)
    st.subheader("Failed samples" if dropped else "Fallbacks")
    fallbacks = engine.read_fallbacks(run_dir / engine.FALLBACKS_FILE)
    if fallbacks.empty:
        st.success("Every rewrite passed the filters.")
    else:
        st.caption("Self mode drops a failed answer (the reference must hold only the model's own text)." if dropped
                   else "A failed rewrite keeps the original sample, flagged `fell_back` with its reason.")
        st.dataframe(engine.fallback_table(fallbacks, result.n), hide_index=True,
                     column_config={"share": st.column_config.NumberColumn(format="percent")})
        st.dataframe(fallbacks, hide_index=True)
    open_compare(result)


def open_compare(result: RefineResult) -> None:
    if not DatasetStore(workspace()).exists(result.output_dataset):
        st.warning(f"The output dataset {result.output_dataset!r} is no longer in the workspace.")
        return
    if st.button(f"Compare {result.parent} vs {result.output_dataset}", type="primary", key="refine_compare",
                 help="opens the Compare page on the two sets (scored by this run unless scoring was off)"):
        st.session_state[COMPARE_A] = result.parent
        st.session_state[COMPARE_B] = result.output_dataset
        st.switch_page("views/compare.py")


def pick_run(ws) -> Path | None:
    """The run to show: the one just launched (newest first), or a past refine run picked from the list."""
    runs = manager.list_runs(ws, "refine")
    if not runs:
        return None
    labels = {r.id: f"{r.id} · {r.state}" for r in runs}
    chosen = st.selectbox("Run", list(labels), format_func=labels.get, key="refine_run_pick")
    return ws.runs / chosen


def main() -> None:
    st.title("Refine")
    st.caption("DGR: the target model restates each sample's reasoning and answer in its own words, keeping the "
               "safety decision. A rewrite that fails a filter keeps the original sample, flagged with the reason.")
    ws, spec, backend = workspace(), current_model(), current_backend(generation=True)
    st.caption(f"Target model: `{spec.ref}` · backend `{backend}` (change it in the sidebar)")
    store = DatasetStore(ws)
    dataset = pick_dataset(store)
    if dataset is None:
        return
    mode = st.radio("Mode", MODES, horizontal=True, key="refine_mode", captions=[MODE_HELP[m] for m in MODES])
    template = template_editor(mode)
    try:
        df = store.load(dataset)
    except DGRError as exc:
        show_error(exc, "dataset")
        return
    show_preview(template, mode, df, spec, backend)
    cfg = build_config(dataset, mode, template, spec, backend)
    if store.exists(cfg.effective_output):
        st.caption(f"The dataset {cfg.effective_output!r} exists and will be replaced.")
    problem = problems(cfg)
    if problem:
        st.error(problem, icon="⚠️")
    if st.button("Launch refinement", type="primary", disabled=problem is not None, key="refine_launch"):
        run = launch(ws, "refine", cfg.to_dict(), name=f"refine-{dataset}", key=KEY)
        if run is not None:
            st.session_state["refine_run_pick"] = run.name  # show the new run, not the one picked before
    run_dir = pick_run(ws)
    if run_dir is not None:
        st.subheader("Run")
        job_panel(run_dir, KEY)
        show_result(run_dir)


main()
