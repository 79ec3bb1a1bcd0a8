"""Runs: every run of the workspace (refine, score, train, evaluate, ...) with its config, status and results;
the outputs of an evaluate run; and a comparison of two runs (config diff, loss curves, metric deltas, paired
test). Reads only the files the jobs wrote, through dgr_core.runs and dgr_core.jobs.manager.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dgr_core import runs
from dgr_core.jobs import manager
from dgr_core.jobs.results import EvalResult, ResultError
from dgr_ui.common import show_error, workspace
from dgr_ui.comparison import metric_deltas_view, paired_test
from dgr_ui.outputs import outputs_browser
from dgr_ui.readable import metrics_view, readable, settings_table

ALL = "(all)"
OUTPUT_VIEW = ["benchmark", "id", "verdict", "prompt", "response", "extracted", "reference", "finish_reason",
               "n_tokens", "judge", "matched"]

ws = workspace()
st.title("Runs")
st.caption("Every job run in this workspace. Runs are folders under "
           f"`{ws.runs}`: job.json (config), status.json, progress.jsonl, log.txt, outputs and result.json.")


def runs_overview() -> list[manager.RunInfo]:
    everything = runs.run_table(ws)
    kinds = [ALL, *sorted(everything["kind"].unique())] if len(everything) else [ALL]
    kind = st.selectbox("Kind", kinds, key="runs_kind")
    table = everything if kind == ALL else runs.run_table(ws, kind)
    st.dataframe(table, hide_index=True, width="stretch")
    return manager.list_runs(ws, None if kind == ALL else kind)


def stored_json(info: manager.RunInfo) -> object:
    """result.json as stored, for display: its text when it is not even JSON."""
    try:
        return info.stored_result()
    except ValueError:
        return (info.run_dir / "result.json").read_text(encoding="utf-8", errors="replace")


def result_tab(info: manager.RunInfo) -> None:
    """The typed result (metrics table, the other fields), and result.json as stored; the error and the stored
    JSON when it does not read back."""
    try:
        result = info.result()
    except ResultError as exc:
        show_error(exc, "Result")
        with st.expander("result.json as stored", expanded=True):
            stored = stored_json(info)
            if isinstance(stored, dict):
                st.json(stored)
            else:
                st.code(str(stored), language="json")
        return
    if result is None:
        st.info("No result.json yet (written last, when the run finishes).")
        return
    if isinstance(result, EvalResult):
        st.dataframe(metrics_view(runs.metrics_table(result)), hide_index=True, width="stretch")
    st.dataframe(settings_table(runs.result_fields(result)), hide_index=True, width="stretch")
    with st.expander("result.json as stored"):
        st.json(info.stored_result() or {}, expanded=False)


def details(info: manager.RunInfo) -> None:
    names = ["Config", "Status", "Result", "Log"]
    has_outputs = info.kind == "evaluate"
    loss = runs.load_loss(info)
    names += (["Outputs"] if has_outputs else []) + (["Loss"] if not loss.empty else [])
    tabs = dict(zip(names, st.tabs(names), strict=True))
    with tabs["Config"]:
        st.dataframe(settings_table(info.spec.get("config")), hide_index=True, width="stretch")
        versions = ", ".join(f"{k} {v}" for k, v in (info.spec.get("versions") or {}).items())
        st.caption(f"created {info.spec.get('created_at', '')} · versions {versions or '–'}")
    with tabs["Status"]:
        st.dataframe(settings_table(manager.status(info.run_dir)), hide_index=True, width="stretch")
    with tabs["Result"]:
        result_tab(info)
    with tabs["Log"]:
        st.code(manager.log_tail(info.run_dir, 80) or "(empty log)", language="text")
    if has_outputs:
        with tabs["Outputs"]:
            outputs_browser(info, f"runs_out_{info.id}", OUTPUT_VIEW)
    if not loss.empty:
        with tabs["Loss"]:
            st.plotly_chart(px.line(loss, x="step", y="loss", hover_data=["epoch"]), width="stretch")


def eval_result(info: manager.RunInfo) -> EvalResult | None:
    """An evaluate run's typed result; None, with the error shown, when its result.json does not read back."""
    try:
        return info.result_as(EvalResult)
    except ResultError as exc:
        show_error(exc, f"Run {info.id}")
        return None


def paired_view(a: manager.RunInfo, b: manager.RunInfo, res_a: EvalResult, res_b: EvalResult) -> None:
    paired = paired_test(a, b, res_a, res_b, "runs_paired_bench")
    if paired is None:
        return
    bench, table, test = paired
    exact = f"McNemar p = {test.p_value:.3g} (a wrong / b right: {test.b01}, a right / b wrong: {test.b10})" \
        if test.b01 is not None else f"bootstrap p = {test.p_value:.3g} (k samples: per-item means)"
    st.markdown(f"**{bench}**: n = {test.n} items, every one kept (truncated in a: "
                f"{table.attrs.get('n_truncated_a', 0)}, in b: {table.attrs.get('n_truncated_b', 0)}; they score 0), "
                f"delta (b - a) = {test.delta:+.3f}, 95% bootstrap CI [{test.ci_low:+.3f}, {test.ci_high:+.3f}], "
                f"{exact}")
    st.dataframe(table[table["change"] != 0], hide_index=True, width="stretch")


def compare(all_runs: list[manager.RunInfo]) -> None:
    ids = [r.id for r in all_runs]
    col1, col2 = st.columns(2)
    id_a = col1.selectbox("Run a (baseline)", ids, index=min(1, len(ids) - 1), key="runs_cmp_a")
    id_b = col2.selectbox("Run b", ids, index=0, key="runs_cmp_b")
    a, b = all_runs[ids.index(id_a)], all_runs[ids.index(id_b)]
    st.subheader("Config diff")
    diff = runs.config_diff(a.spec.get("config") or {}, b.spec.get("config") or {})
    if a.kind != b.kind:
        st.warning(f"Different kinds: {a.kind} vs {b.kind}.")
    if diff.empty:
        st.info("Identical configs.")
    else:
        st.dataframe(diff.map(readable), hide_index=True, width="stretch")
    curves = runs.loss_curves({f"a: {a.id}": a, f"b: {b.id}": b})
    if not curves.empty:
        st.subheader("Loss")
        st.plotly_chart(px.line(curves, x="step", y="loss", color="run", hover_data=["epoch"]), width="stretch")
    if a.kind == b.kind == "evaluate":
        metric_comparison(a, b)


def metric_comparison(a: manager.RunInfo, b: manager.RunInfo) -> None:
    """Two finished evaluate runs: metrics side by side (like for like or not) and the paired test."""
    res_a, res_b = eval_result(a), eval_result(b)
    if res_a is not None and res_b is not None:
        st.subheader("Metrics (delta = b - a)")
        metric_deltas_view(res_a, res_b, {c: st.column_config.NumberColumn(format="%.3f")
                                          for c in ("value_a", "value_b", "delta")})
        paired_view(a, b, res_a, res_b)


listed = runs_overview()
if not listed:
    st.info("No runs yet. Score, refine, train or evaluate from the other pages, or with `dgr` on the command line.")
else:
    st.header("Details")
    chosen = st.selectbox("Run", [r.id for r in listed], key="runs_detail")
    details(next(r for r in listed if r.id == chosen))
    if len(listed) >= 2:
        st.header("Compare two runs")
        compare(listed)
