"""Shift: how far do datasets lie from the target model's own distribution?

Pick two or more datasets (the first is the reference: typically the model's own answers, or the refined set).
Everything shown is read from caches (`dgr_core.shift.analysis`); missing scores are computed by `score` jobs
launched from here, large UMAP maps by a `project` job.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.scoring.api import ScoreConfig
from dgr_core.scoring.job import ScoreJobConfig
from dgr_core.shift import analysis as A
from dgr_core.shift.selections import list_selections, save_selection
from dgr_ui import audit_view as AV
from dgr_ui import tokens as ui
from dgr_ui.common import show_error, workspace
from dgr_ui.jobs import job_panel, launch, tracked
from dgr_ui.score_settings import score_settings
from dgr_ui.state import SHIFT_DATASETS

SELECTED = "shift_selected"  # {dataset: [ids]} of the current map selection
EVENT_SIG = "shift_event_sig"  # the last selection event seen, so a rerun without a new event keeps SELECTED
NO_OWN = "(none)"
TAB = "shift_tab"  # the open tab (its label)


def score_config() -> ScoreConfig:
    with st.expander("Scoring settings (must match the ones the scores were computed with)"):
        return score_settings("shift")


def missing_panel(ws, missing: list[str], cfg: ScoreConfig, handle) -> None:
    """Coverage of the datasets without complete scores, a button to score them, and their job panels."""
    if not missing:
        return
    lines = []
    for name in missing:
        look = A.score_lookup(ws, name, cfg, handle)
        lines.append(f"- **{name}**: {look.n_cached} of {look.n_rows} samples scored")
    st.warning("Not scored yet with this model and settings (nothing is computed in the page):\n"
               + "\n".join(lines))
    if st.button(f"Score {len(missing)} dataset(s)", key="shift_score_missing", type="primary"):
        for name in missing:  # one job per dataset; they queue on the device lock
            launch(ws, "score", ScoreJobConfig(name, cfg).to_dict(), name=f"score {name}",
                   key=f"shift-score-{name}")
    for name in missing:
        job_panel(tracked(f"shift-score-{name}"), key=f"shift-score-{name}")


def distributions_tab(sets: dict[str, A.ScoredSet]) -> None:
    kind = st.radio("Show", ["histogram", "ecdf"], horizontal=True, key="shift_dist_kind",
                    format_func=lambda k: {"histogram": "Histograms", "ecdf": "ECDFs"}[k])
    st.plotly_chart(ui.nll_distribution_figure(A.nll_long(sets), kind), key="shift_dist_chart")
    st.caption("Per-sample mean NLL per token under the target model (nats); right = less likely = further "
               "from the model's own distribution.")
    st.dataframe(A.nll_summary(sets), hide_index=True)


def stats_tab(ws, sets: dict[str, A.ScoredSet], segment: str, names: list[str]) -> None:
    ref = next(iter(sets))
    all_pairs = st.toggle("All pairs", key="shift_all_pairs",
                          help=f"Off: every dataset against the reference **{ref}** (first chosen).")
    results = {}
    if len(sets) < 2:
        st.info("Choose at least two scored datasets for the likelihood and embedding statistics.")
    else:
        with st.spinner("Computing shift statistics (cached after the first time)…"):
            results = A.pairwise_stats(ws, sets, all_pairs=all_pairs, segment=segment)
        headline(results)
    frame = A.shift_stats_frame({**results, **output_family(ws, sets, names)})
    if frame.empty:
        return
    st.dataframe(frame.drop(columns=["key"]), hide_index=True, column_config={
        "value": st.column_config.NumberColumn(format="%.4g"),
        "effect size": st.column_config.NumberColumn(format="%.3g"),
        "p-value": st.column_config.NumberColumn(format="%.2g")})
    st.markdown("**Families** — " + " · ".join(f"*{k}*: {v}" for k, v in A.FAMILY_LABELS.items()))
    st.caption("A = reference, B = the set under test. MMD² and energy distance: decide *whether* with the "
               "p-value, read *how large* from the interval. Centroid distances are never below 0: read their "
               "p-value.")


def headline(results: dict[str, list]) -> None:
    """Lead with the size of the shift: ΔNLL and classifier AUC per comparison."""
    for label, stats in results.items():
        top = A.headline(stats)
        cols = st.columns(3)
        cols[0].markdown(f"**{label}**")
        if "mean_delta_nll" in top:
            s = top["mean_delta_nll"]
            cols[1].metric("Mean ΔNLL (nats/token)", f"{s.value:+.3f}", help=s.description,
                           delta=f"95% CI [{s.ci_low:.3f}, {s.ci_high:.3f}]", delta_color="off")
        if "classifier_auc" in top:
            s = top["classifier_auc"]
            cols[2].metric("Classifier AUC", f"{s.value:.3f}", help=s.description,
                           delta=f"95% CI [{s.ci_low:.3f}, {s.ci_high:.3f}]", delta_color="off")


def output_family(ws, sets: dict[str, A.ScoredSet], names: list[str]) -> dict[str, list]:
    """Similarity of each dataset's answers to the model's own answers (a dataset the user points to)."""
    own = st.selectbox("Model's own answers (for the output family)", [NO_OWN, *names], key="shift_own",
                       help="A dataset of the target model's own answers to the same prompts (self-generated). "
                            "Rows pair by parent_id or by prompt text.")
    if own == NO_OWN:
        return {}
    fam = A.output_family(ws, {name: s.frame for name, s in sets.items()}, own)
    for name in fam.unpaired:
        st.info(f"{name}: fewer than 2 prompts in common with {own}.")
    if fam.to_embed:
        st.info(f"Output similarity of {', '.join(fam.to_embed)} needs sentence embeddings of {fam.n_missing} "
                "answer(s) (all-MiniLM-L6-v2, offline), computed by a job.")
        if st.button(f"Embed {fam.n_missing} answers", key="shift_embed"):
            launch(ws, "embed_sentences", {"datasets": [own, *fam.to_embed], "column": "answer"},
                   name="embed answers", key="shift-embed")
    job_panel(tracked("shift-embed"), key="shift-embed")
    return fam.stats


def map_tab(ws, sets: dict[str, A.ScoredSet], segment: str, cfg: ScoreConfig) -> None:
    c1, c2 = st.columns(2)
    method = c1.radio("Projection", ["pca", "umap"], horizontal=True, key="shift_method",
                      format_func=str.upper, help="PCA is instant; UMAP keeps local neighbourhoods "
                      f"(above {A.UMAP_INLINE_MAX} points it runs as a job).")
    color_by = c2.radio("Colour by", ["dataset", "category", "NLL"], horizontal=True, key="shift_color")
    X, points = A.map_points(sets, segment)
    proj = A.cached_projection(ws, X, method)
    if proj is None and A.needs_job(method, len(X)):
        st.info(f"UMAP of {len(X)} points runs as a job (seconds to minutes).")
        if st.button("Compute UMAP map", key="shift_umap_job"):
            launch(ws, "project", {"datasets": list(sets), "score": cfg.to_dict(), "method": method},
                   name="umap map", key="shift-project")
        job_panel(tracked("shift-project"), key="shift-project")
    elif proj is None:
        with st.spinner(f"{method.upper()} of {len(X)} points…"):
            proj = A.compute_projection(ws, X, method)
    if proj is not None:
        if proj.note:
            st.caption(proj.note)
        event = st.plotly_chart(ui.map_figure(points, proj.coords, color_by), key="shift_map",
                                on_select="rerun", selection_mode=("box", "lasso"))
        sync_selection(event)
    selection_panel(ws, points)


def sync_selection(event) -> None:
    """Take the chart's selection only when it changed, so other reruns (and tests) keep the current one."""
    points = (event or {}).get("selection", {}).get("points", []) if hasattr(event, "get") else []
    ids = A.selection_ids(points)
    sig = json.dumps(ids, sort_keys=True)
    if st.session_state.get(EVENT_SIG) != sig:
        st.session_state[EVENT_SIG] = sig
        st.session_state[SELECTED] = ids


def selection_panel(ws, points: pd.DataFrame) -> None:
    selected: dict[str, list[str]] = st.session_state.get(SELECTED) or {}
    n = sum(len(v) for v in selected.values())
    shown = A.filter_points(points, selected)
    if n:
        st.markdown(f"**{n} selected** ({', '.join(f'{d}: {len(v)}' for d, v in selected.items())})")
    else:
        st.caption("Box- or lasso-select points on the map to filter this table and save them as a subset.")
    st.dataframe(shown, hide_index=True, key="shift_points_table")
    if n:
        save_form(ws, selected)
    saved = list_selections(ws)
    if saved:
        with st.expander(f"Saved selections ({len(saved)})"):
            st.dataframe(pd.DataFrame([{"name": s.name, "dataset": s.dataset, "n": s.n, "note": s.note,
                                        "created": s.created_at} for s in saved]), hide_index=True)


def save_form(ws, selected: dict[str, list[str]]) -> None:
    with st.form("shift_save_selection"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Subset name", key="shift_sel_name")
        dataset = c2.selectbox("Of dataset", list(selected), key="shift_sel_dataset",
                               help="A subset belongs to one dataset; training can use it later.")
        note = st.text_input("Note", key="shift_sel_note")
        if st.form_submit_button("Save selection"):
            try:
                sel = save_selection(ws, name, dataset, selected[dataset], note,
                                     extra={"from": "shift map"})
                st.success(f"Saved {sel.n} samples of {sel.dataset} as '{sel.name}'.")
            except DGRError as exc:
                show_error(exc, "Save selection")


def rankings_tab(sets: dict[str, A.ScoredSet], segment: str) -> None:
    st.subheader("Most out-of-distribution samples")
    st.dataframe(A.top_ood(sets, segment, n=25), hide_index=True)
    ref = next(iter(sets))
    for name in [n for n in sets if n != ref]:
        delta = A.delta_vs_reference(sets[ref], sets[name], segment)
        st.markdown(f"**Largest ΔNLL, {name} − {ref}** (paired by {delta.attrs.get('paired_by')}, "
                    f"{len(delta)} pairs)")
        if delta.empty:
            st.caption("No shared prompts.")
        else:
            st.dataframe(delta.head(25), hide_index=True)
    st.subheader("Shift by category")
    breakdown = A.category_breakdown(sets, segment)
    if breakdown.empty:
        return
    show_delta = len(sets) > 1 and st.toggle(f"Show the shift from {ref} (ΔNLL)", value=True,
                                             key="shift_category_delta")
    st.plotly_chart(ui.category_figure(breakdown, delta=show_delta), key="shift_category_chart")
    st.caption(f"Mean per-sample NLL per category; `Δ <dataset>` = its mean minus {ref}'s in that category.")
    st.dataframe(breakdown)


def main() -> None:
    st.title("Distribution shift")
    st.caption("How far each dataset lies from the target model's own distribution: likelihood, embedding and "
               "output families.")
    ws = workspace()
    names = [info.name for info in DatasetStore(ws).list()]
    if not names:
        st.info("No datasets yet: import one on the Datasets page, or run `dgr prepare` for the demo sets.")
        return
    chosen = st.multiselect("Datasets (the first is the reference)", names, default=names[:2],
                            key=SHIFT_DATASETS)
    if not chosen:
        return
    segment = st.radio("NLL of", list(A.SEGMENTS), index=2, horizontal=True, key="shift_segment")
    cfg = score_config()
    try:
        handle = A.model_handle(cfg.model, cfg.backend, ws)
        sets, missing = A.load_scored_sets(ws, chosen, cfg, handle)
    except DGRError as exc:
        show_error(exc, "Loading scores")
        return
    missing_panel(ws, missing, cfg, handle)
    AV.shift_panel(ws, chosen)
    if not sets:
        return
    views = {"Distributions": lambda: distributions_tab(sets),
             "Shift statistics": lambda: stats_tab(ws, sets, segment, names),
             "Map": lambda: map_tab(ws, sets, segment, cfg),
             "Rankings": lambda: rankings_tab(sets, segment)}
    # Lazy tabs: only the open one runs, so a rerun with 10,000 samples builds one view, not four.
    for tab, view in zip(st.tabs(list(views), key=TAB, on_change="rerun"), views.values(), strict=True):
        if tab.open:
            with tab:
                view()


main()
