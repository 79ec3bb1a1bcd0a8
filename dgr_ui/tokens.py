"""Streamlit/plotly helpers of the shift and compare pages: the coloured-token viewer and the charts.

The token HTML itself is built (and unit-tested) in `dgr_core.compare`; this module only displays it and draws
plotly figures from tables the core computed. No statistics here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dgr_core.compare import SURPRISAL_MAX, TokenView, legend_html, token_groups, token_html
from dgr_core.report import ExportError, export_figure, export_unavailable
from dgr_core.scoring.segments import SEGMENT_NAMES
from dgr_core.shift.analysis import category_mean_columns, top_groups

# Enough to tell datasets apart in lab-meeting slides; the first is the reference's.
PALETTE = px.colors.qualitative.Safe
# White (expected) to the token viewer's red (surprising), on the same 0..SURPRISAL_MAX nats scale.
SURPRISAL_SCALE = [[0.0, "rgb(255, 255, 255)"], [0.3, "rgb(248, 180, 180)"], [1.0, "rgb(220, 38, 38)"]]


def show_tokens(view: TokenView) -> None:
    """A response with every token coloured by its surprisal; hover a token for its log-prob and rank."""
    st.html(token_html(view.pieces, view.logprobs, view.ranks, view.segments))


def show_legend() -> None:
    st.html(legend_html())


def nll_distribution_figure(long: pd.DataFrame, kind: str = "histogram") -> go.Figure:
    """Overlaid per-dataset distributions of per-sample NLL, one panel per segment (reasoning, answer, total)."""
    common = {"color": "dataset", "facet_col": "segment", "color_discrete_sequence": PALETTE,
              "category_orders": {"segment": ["reasoning", "answer", "total"]},
              "labels": {"nll": "NLL (nats / token)"}, "hover_data": ["id", "category"]}
    if kind == "ecdf":
        fig = px.ecdf(long, x="nll", **common)
    else:
        common.pop("hover_data")
        fig = px.histogram(long, x="nll", barmode="overlay", histnorm="probability density", opacity=0.55,
                           nbins=40, **common)
    fig.update_xaxes(matches=None)  # segments have different scales
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend_title_text="dataset")
    return fig


def map_figure(points: pd.DataFrame, coords: np.ndarray, color_by: str = "dataset") -> go.Figure:
    """Scatter of the projected embeddings; customdata = [dataset, id] so a selection maps back to samples."""
    df = points.assign(x=coords[:, 0], y=coords[:, 1] if coords.shape[1] > 1 else 0.0)
    color = {"dataset": "dataset", "category": "group", "NLL": "nll"}[color_by]
    if color == "group":  # one trace per colour: many multi-label categories would make the map slow and unreadable
        df["group"] = top_groups(df["category"]).to_numpy()
    kwargs = {"color_continuous_scale": "Reds"} if color == "nll" else {"color_discrete_sequence": PALETTE}
    fig = px.scatter(df, x="x", y="y", color=color, custom_data=["dataset", "id"], render_mode="webgl",
                     hover_data={"x": False, "y": False, "dataset": True, "id": True, "category": True,
                                 "nll": ":.3f", "prompt": True}, **kwargs)
    fig.update_traces(marker={"size": 5, "opacity": 0.75})
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                      xaxis_title="", yaxis_title="")
    return fig


def category_figure(breakdown: pd.DataFrame, delta: bool = False) -> go.Figure:
    """Grouped bars per category of `analysis.category_breakdown`: each dataset's mean NLL, or with `delta` its
    shift from the reference (the `Δ <dataset>` columns: mean NLL minus the reference's in that category)."""
    if delta:
        cols = [c for c in breakdown.columns if str(c).startswith("Δ ")]
        values = breakdown[cols].rename(columns=lambda c: str(c)[2:])
        y = "ΔNLL vs reference"
    else:
        values, y = breakdown[category_mean_columns(breakdown)], "mean NLL"
    long = values.reset_index().melt(id_vars="category", var_name="dataset", value_name=y).dropna()
    fig = px.bar(long, x="category", y=y, color="dataset", barmode="group",
                 color_discrete_sequence=PALETTE if not delta else PALETTE[1:])
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_tickangle=-30)
    return fig


def segment_figure(figures: pd.DataFrame, label_a: str, label_b: str) -> go.Figure:
    """NLL by segment of the two sides of one pair (`compare.sample_figures`)."""
    fig = go.Figure()
    for col, label, color in (("NLL A", label_a, PALETTE[0]), ("NLL B", label_b, PALETTE[1])):
        fig.add_bar(name=label, x=figures.index.tolist(), y=figures[col].astype(float).tolist(), marker_color=color)
    fig.update_layout(barmode="group", height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      yaxis_title="NLL (nats / token)")
    return fig


def _cell_text(text: str) -> str:
    """Token text for a plotly cell: newlines and tabs made visible, and escaped (plotly reads a few HTML tags,
    so a literal `<think>` would otherwise vanish)."""
    shown = text.replace("\n", "⏎").replace("\t", "⇥")
    return shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def token_grid(view: TokenView, per_row: int = 12, max_rows: int = 30) -> tuple[list, list, list, list[str], bool]:
    """The tokens of a view laid out for a heatmap: (surprisal z, cell text, hover text, row labels, cut).

    One cell per displayed token (`compare.token_groups`: a multi-byte character split over tokens is one cell
    with the summed log-prob); a new row starts every `per_row` cells and wherever the segment changes, so
    reasoning and answer never share a row, and each segment's first row is labelled with its name.
    `cut` is True when more than `max_rows` rows would be needed (the rest is left out).
    """
    z, text, hover, labels = [], [], [], []
    current, cut = None, False
    for g in token_groups(view):
        if g.segment != current or len(z[-1]) == per_row:
            if len(z) == max_rows:
                cut = True
                break
            name = SEGMENT_NAMES.get(g.segment, "") if g.segment != current else ""
            for rows in (z, text, hover):
                rows.append([])
            labels.append(f"{name} {len(labels) + 1}".strip() if name else str(len(labels) + 1))
            current = g.segment
        surprisal = -g.logprob if np.isfinite(g.logprob) else None
        z[-1].append(surprisal)
        text[-1].append(_cell_text(g.text))
        tip = f"log p {g.logprob:.3f} · rank {', '.join(str(int(r)) for r in view.ranks[g.first : g.first + g.n])}"
        hover[-1].append(f"{_cell_text(g.text)}<br>{tip if surprisal is not None else 'not scored'}")
    for rows in (z, text, hover):  # a heatmap needs a rectangle
        for row in rows:
            row.extend([None if rows is z else ""] * (per_row - len(row)))
    return z, text, hover, labels, cut


def comparison_figure(views: dict[str, TokenView], title: str = "", per_row: int = 12,
                      max_rows: int = 30) -> go.Figure:
    """Both responses side by side as token grids coloured by surprisal (white = expected, red = surprising),
    the token text in each cell: the image of one comparison for slides."""
    # Room between the panels for the right one's row labels ("think_close 12").
    fig = make_subplots(rows=1, cols=len(views), horizontal_spacing=0.09,
                        subplot_titles=[f"{name}" for name in views])
    n_rows = 1
    for col, (name, view) in enumerate(views.items(), start=1):
        z, text, hover, labels, cut = token_grid(view, per_row, max_rows)
        n_rows = max(n_rows, len(z))
        fig.add_trace(go.Heatmap(
            z=z, text=text, hovertext=hover, texttemplate="%{text}", textfont={"size": 11},
            hovertemplate="%{hovertext}<extra>" + name + "</extra>", colorscale=SURPRISAL_SCALE, zmin=0,
            zmax=SURPRISAL_MAX, xgap=2, ygap=2, showscale=col == len(views),
            colorbar={"title": {"text": "−log p (nats)"}}), row=1, col=col)
        fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", showgrid=False,
                         zeroline=False, ticks="", row=1, col=col)
        fig.update_xaxes(visible=False, showgrid=False, zeroline=False, row=1, col=col)
        if cut:
            fig.layout.annotations[col - 1].text = f"{name} (first {max_rows} rows)"
    fig.update_layout(title=title or None, height=max(260, 26 * n_rows + 120), plot_bgcolor="white",
                      margin={"l": 100, "r": 10, "t": 70 if title else 40, "b": 10})
    return fig


def export_png(fig: go.Figure) -> tuple[bytes | None, str]:
    """(PNG bytes, "") through `dgr_core.report.export_figure`, or (None, why not) when export cannot run here."""
    why = export_unavailable()
    if why:
        return None, why
    try:
        return export_figure(fig, "png", width=1600, height=int(fig.layout.height or 700), scale=1.5), ""
    except ExportError as exc:
        return None, str(exc)
