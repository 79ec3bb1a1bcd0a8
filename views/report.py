"""Report: one self-contained HTML file for a lab meeting — the shift-vs-tax figure with its fit, the results
table, the data-budget curve, the dataset fingerprints and the configs of every run used. It opens offline
(plotly.js is inside). Choose what goes in, build, download, preview.

The report is built by dgr_core.report.build_report; this page only gathers the options.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.report import ReportOptions, build_report
from dgr_core.safety_tax import SHIFT_HELP, SHIFT_STATS, SafetyTaxData, collect, y_label
from dgr_ui.common import current_backend, show_error, workspace

NO_REFERENCE = "(none)"
LARGEST_N = "largest N per dataset"
REPORT_KEY, NAME_KEY = "report_html", "report_file_name"

ws = workspace()
st.title("Report")
st.caption("One HTML file with the figures (interactive, data inside), tables, dataset fingerprints and the "
           "configs and versions behind every number. It needs no network to open.")


def options(data: SafetyTaxData, reference: str | None) -> ReportOptions:
    title = st.text_input("Title", value="DGR Lens — safety tax", key="report_title")
    notes = st.text_area("Notes (shown under the title)", key="report_notes")
    cols = st.columns(3)
    xs, ys = data.shift_choices(), data.y_choices()
    x = cols[0].selectbox("Shift statistic (x)", xs or ["nll_total"], format_func=lambda k: SHIFT_STATS[k],
                          key="report_x", help=SHIFT_HELP, disabled=not xs)
    y = cols[1].selectbox("Reasoning metric (y)", ys or ["reasoning_drop_avg"], format_func=y_label,
                          key="report_y", disabled=not ys)
    n = cols[2].selectbox("Results table at N", [LARGEST_N, *sorted({r.n_samples for r in data.records})],
                          key="report_n")
    st.markdown("**Include**")
    parts = st.columns(5)
    include = {name: parts[i].checkbox(label, value=True, key=f"report_inc_{name}") for i, (name, label) in
               enumerate([("scatter", "Shift vs. tax"), ("results", "Results table"), ("budget", "Data budget"),
                          ("datasets", "Fingerprints"), ("configs", "Run configs")])}
    return ReportOptions(title=title, notes=notes, x_stat=x, y_metric=y, backend=data.backend, reference=reference,
                         n_samples=None if n == LARGEST_N else int(n), **include)


def build(opts: ReportOptions, data: SafetyTaxData) -> None:
    try:
        with st.spinner("Building the report…"):
            st.session_state[REPORT_KEY] = build_report(ws, opts, data)
    except DGRError as exc:
        show_error(exc, "Building the report")
        return
    st.session_state[NAME_KEY] = f"dgr-report-{datetime.now(UTC):%Y%m%d-%H%M%S}.html"


def show_built() -> None:
    doc = st.session_state.get(REPORT_KEY)
    if not doc:
        return
    data = doc.encode("utf-8")
    st.success(f"Report ready: {len(data) / 1e6:.1f} MB (most of it is plotly.js, so it opens offline).")
    st.download_button("Download the report (HTML)", data=lambda: data, file_name=st.session_state[NAME_KEY],
                       mime="text/html", key="report_download", on_click="ignore", type="primary")
    if st.toggle("Preview", key="report_preview"):
        st.iframe(doc, height=900)


def page() -> None:
    names = [NO_REFERENCE, *[i.name for i in DatasetStore(ws).list()]]
    ref = st.selectbox("Reference dataset for ΔNLL", names, key="report_reference",
                       help="Optional: e.g. the base model's self-generated answers, scored under the same model.")
    reference = None if ref == NO_REFERENCE else ref
    try:
        data = collect(ws, backend=current_backend(), reference=reference)
    except DGRError as exc:
        show_error(exc, "Reading the runs")
        return
    if data.skipped:
        st.warning("Skipped (result cannot be read; left out of the report's numbers):\n" + data.skipped_message())
    if data.empty:
        st.info("No finished training runs yet, so there is nothing to report. Train a model (Train page), "
                "evaluate it and its base model (Evaluate page), score its training data (Shift page), then come "
                "back: the Safety-tax page shows what the report will contain.", icon="📄")
        return
    if data.unscored:
        st.warning(data.unscored_message(), icon="⏳")
    opts = options(data, reference)
    if st.button("Build report", key="report_build", type="primary"):
        build(opts, data)
    show_built()


page()
