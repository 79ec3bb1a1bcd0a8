"""Safety tax: one point per training run — how far its training data lies from the base model (x) against the
reasoning it cost (y), with a fitted line and correlations; the paper-style results table; and the data-budget
curve (N samples vs refusal and accuracy). Presentation mode shows one large figure per screen for a lab meeting.

Everything is read from finished runs and the score cache by dgr_core.safety_tax; figures and their export come
from dgr_core.report. The page only picks settings and renders.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.evaluate.signature import describe
from dgr_core.pipeline import demo_caveat
from dgr_core.report import (
    FORMATS,
    budget_figure,
    export_figure,
    export_unavailable,
    presentation,
    scatter_figure,
)
from dgr_core.safety_tax import (
    DELTA_COLUMN,
    SHIFT_HELP,
    SHIFT_STATS,
    SafetyTaxData,
    budget_curve,
    collect,
    fit_line,
    pattern_rates,
    results_cells,
    results_table,
    scatter_frame,
    y_label,
)
from dgr_ui import audit_view as AV
from dgr_ui.common import current_backend, show_error, workspace

NO_REFERENCE = "(none)"
LARGEST_N = "largest N per dataset"
SLIDES = ["Shift vs. safety tax", "Results table", "Data budget"]
EMPTY = ("No finished training runs yet. Each training run becomes one point here once it is **trained** (Train "
         "page), **evaluated** together with its base model (Evaluate page: evaluate `run:<train run id>` and the "
         "base model on the same benchmarks), and its training data is **scored** under the base model (Shift "
         "page). Train on an original dataset and on its refined version to compare them.")

ws = workspace()
top = st.columns([3, 1], vertical_alignment="center")
present = top[1].toggle("Presentation mode", key="tax_present",
                        help="Wide layout, large fonts, one figure per screen (next / previous).")
if present:
    st.set_page_config(layout="wide")
top[0].title("Safety tax")


# ---------------------------------------------------------------------------------------------------------------
# Settings and data
# ---------------------------------------------------------------------------------------------------------------


def reference_choice() -> str | None:
    names = [NO_REFERENCE, *[i.name for i in DatasetStore(ws).list()]]
    ref = st.selectbox("Reference dataset for ΔNLL", names, key="tax_reference",
                       help="E.g. the base model's own (self-generated) answers, scored under the same model. "
                            "ΔNLL = mean NLL of a run's training samples − mean NLL of this set.")
    return None if ref == NO_REFERENCE else ref


def load(reference: str | None) -> SafetyTaxData | None:
    try:
        return collect(ws, backend=current_backend(), reference=reference)
    except DGRError as exc:
        show_error(exc, "Reading the runs")
        return None


def axis_choices(data: SafetyTaxData) -> tuple[str | None, str | None]:
    cols = st.columns(2)
    xs = data.shift_choices()
    x = cols[0].selectbox("Shift statistic (x)", xs, format_func=lambda k: SHIFT_STATS[k], key="tax_x",
                          help=SHIFT_HELP) if xs else None
    ys = data.y_choices()
    y = cols[1].selectbox("Reasoning metric (y)", ys, format_func=y_label, key="tax_y",
                          help="Accuracy of the trained model, or its drop against the base model (base − "
                               "trained, in points: the safety tax).") if ys else None
    return x, y


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------


def export_buttons(fig, stem: str, key: str) -> None:
    """HTML / PNG / SVG downloads, rendered only when clicked."""
    why = export_unavailable()
    row = st.container(horizontal=True)
    for fmt, mime in FORMATS.items():
        image = fmt != "html"
        row.download_button(fmt.upper(), data=_renderer(fig, fmt), file_name=f"{stem}.{fmt}", mime=mime,
                            key=f"{key}_{fmt}", on_click="ignore", disabled=bool(image and why),
                            help=why if image and why else f"Download this figure as {fmt.upper()}")


def _renderer(fig, fmt: str) -> Callable[[], bytes]:
    return lambda: export_figure(fig, fmt)


def show_scatter(data: SafetyTaxData, x: str | None, y: str | None) -> None:
    if data.unscored:
        st.warning(data.unscored_message(), icon="⏳")
    if x is None or y is None:
        st.info("No run has both a shift value and a reasoning evaluation yet: score the training datasets "
                "under their base model (Shift page) and evaluate the trained models on a reasoning benchmark.")
        return
    frame = scatter_frame(data, x, y)
    fit = fit_line(frame["x"], frame["y"])
    fig = scatter_figure(frame, fit, x, y)
    # theme=None: Streamlit's theme would override the fonts (presentation mode) and differ from the exports.
    st.plotly_chart(presentation(fig) if present else fig, width="stretch", key="tax_scatter",
                    theme=None)
    (st.success if fit.ok else st.info)(fit.summary() + (f" — {fit.note}" if fit.ok and fit.note else ""))
    st.caption("Intervals: bootstrap 95% over runs (seeded). Symbol: original vs refined training data; colour: "
               "refusal rate on harmful prompts. Hover a point for its run, data and metrics.")
    export_buttons(presentation(fig) if present else fig, f"safety-tax-{x}-{y}", "tax_scatter_export")


def show_table(data: SafetyTaxData) -> None:
    sizes = sorted({r.n_samples for r in data.records})
    n = st.selectbox("Training size (N)", [LARGEST_N, *sizes], key="tax_table_n")
    table = results_table(data, None if n == LARGEST_N else int(n))
    st.dataframe(results_cells(data, None if n == LARGEST_N else int(n)), hide_index=True, width="stretch")
    st.caption(f"Percent, mean over seeds; each cell: value [95% interval] n = graded responses (a pooled "
               f"cluster bootstrap over items for several seeds). '{DELTA_COLUMN}': the refined row's reasoning "
               "average minus vanilla SFT's, in points. Truncated answers count as wrong; the truncation rate and "
               "mean reasoning tokens are shown beside them. Refusal: harmful prompts refused (higher is safer); "
               "over-refusal: benign prompts refused (lower is better).")
    st.download_button("CSV", data=table.to_csv(index=False), file_name="safety-tax-results.csv",
                       mime="text/csv", key="tax_table_csv", on_click="ignore")
    AV.safety_tax_table(pattern_rates(ws, data))


def show_settings(data: SafetyTaxData) -> None:
    """Which evaluation setting each benchmark is joined on, and what was left out (like for like)."""
    if data.settings:
        st.caption("Compared like for like: " + " · ".join(f"**{b}**: {describe(sig)}"
                                                          for b, sig in data.settings.items()))
    if data.excluded:
        with st.expander(f"Left out: {len(data.excluded)} evaluation(s) with other settings", expanded=False):
            st.markdown(data.excluded_message())


def show_budget(data: SafetyTaxData) -> None:
    curve = budget_curve(data)
    if curve.empty:
        st.info("No evaluated training runs yet.")
        return
    fig = budget_figure(curve)
    st.plotly_chart(presentation(fig) if present else fig, width="stretch", key="tax_budget",
                    theme=None)
    st.caption("Error bars: standard deviation over seeds (0 for a single run). Solid: original data; dashed: "
               "refined.")
    export_buttons(presentation(fig) if present else fig, "data-budget", "tax_budget_export")


# ---------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------


def _step(delta: int) -> None:
    st.session_state["tax_slide"] = (st.session_state.get("tax_slide", 0) + delta) % len(SLIDES)


def slides(data: SafetyTaxData, x: str | None, y: str | None) -> None:
    """One figure per screen with previous / next."""
    index = st.session_state.get("tax_slide", 0)
    nav = st.columns([1, 6, 1])
    nav[0].button("◀ Previous", key="tax_prev", on_click=_step, args=(-1,), width="stretch")
    nav[1].markdown(f"### {SLIDES[index]}  ·  {index + 1} / {len(SLIDES)}")
    nav[2].button("Next ▶", key="tax_next", on_click=_step, args=(1,), width="stretch")
    [lambda: show_scatter(data, x, y), lambda: show_table(data), lambda: show_budget(data)][index]()


def page() -> None:
    with st.expander("Settings", expanded=not present):
        reference = reference_choice()
        data = load(reference)
        if data is None:
            return
        x, y = axis_choices(data) if not data.empty else (None, None)
        st.caption(f"Shift read from the score cache of backend `{data.backend}` (the sidebar's backend).")
    for run_id, why in data.skipped:  # unreadable results are named even when no training run is left
        st.warning(f"Skipped run `{run_id}`: {why}")
    if data.empty:
        st.info(EMPTY, icon="🧪")
        return
    if demo_caveat(data.base_metrics):
        st.info(demo_caveat(data.base_metrics), icon=":material/info:")
    if data.run_notes():
        with st.expander(f"Caveats ({len(data.run_notes())})"):
            st.markdown("\n".join(f"- `{run_id}`: {note}" for run_id, note in data.run_notes()))
    show_settings(data)
    if present:
        slides(data, x, y)
        return
    st.subheader(SLIDES[0])
    show_scatter(data, x, y)
    st.subheader(SLIDES[1])
    show_table(data)
    st.subheader(SLIDES[2])
    show_budget(data)


page()
