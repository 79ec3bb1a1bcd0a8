"""Streamlit/plotly helpers of the shift and compare pages: the coloured-token viewer and the charts.

The token HTML itself is built (and unit-tested) in `dgr_core.compare`; this module only displays it and draws
plotly figures from tables the core computed. No statistics here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dgr_core.compare import SURPRISAL_MAX, TokenView, legend_html, token_html

# Enough to tell datasets apart in lab-meeting slides; the first is the reference's.
PALETTE = px.colors.qualitative.Safe


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
    color = {"dataset": "dataset", "category": "category", "NLL": "nll"}[color_by]
    kwargs = {"color_continuous_scale": "Reds"} if color == "nll" else {"color_discrete_sequence": PALETTE}
    fig = px.scatter(df, x="x", y="y", color=color, custom_data=["dataset", "id"], render_mode="webgl",
                     hover_data={"x": False, "y": False, "dataset": True, "id": True, "category": True,
                                 "nll": ":.3f", "prompt": True}, **kwargs)
    fig.update_traces(marker={"size": 5, "opacity": 0.75})
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                      xaxis_title="", yaxis_title="")
    return fig


def category_figure(breakdown: pd.DataFrame) -> go.Figure:
    """Grouped bars of mean NLL per category per dataset (`analysis.category_breakdown`)."""
    means = breakdown[[c for c in breakdown.columns if not str(c).startswith("n (")]]
    long = means.reset_index().melt(id_vars="category", var_name="dataset", value_name="mean NLL").dropna()
    fig = px.bar(long, x="category", y="mean NLL", color="dataset", barmode="group",
                 color_discrete_sequence=PALETTE)
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


def surprisal_strip_figure(views: dict[str, TokenView], width: int = 80) -> go.Figure:
    """Per-token surprisal of each response as a heatmap strip wrapped every `width` tokens (for slides)."""
    rows, labels, hover = [], [], []
    for name, view in views.items():
        s = -np.asarray(view.logprobs, dtype=float)
        for start in range(0, max(len(s), 1), width):
            chunk = np.full(width, np.nan)
            part = s[start : start + width]
            chunk[: len(part)] = part
            rows.append(chunk)
            text = [""] * width
            text[: len(part)] = [p.replace("\n", "⏎") for p in view.pieces[start : start + width]]
            hover.append(text)
            labels.append(f"{name} · {start}")
    fig = go.Figure(go.Heatmap(z=rows, y=labels, text=hover, colorscale="Reds", zmin=0, zmax=SURPRISAL_MAX,
                               hovertemplate="%{text}<br>surprisal %{z:.2f}<extra>%{y}</extra>",
                               colorbar={"title": "−log p"}))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(200, 22 * len(rows) + 80), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title="Per-token surprisal (nats)")
    return fig


def figure_png(fig: go.Figure) -> tuple[bytes | None, str]:
    """(PNG bytes, "") via kaleido, or (None, why not) when it is unavailable."""
    if importlib.util.find_spec("kaleido") is None:
        return None, "PNG export needs the `kaleido` package (not installed); use the HTML export or the " \
                     "camera icon of the chart instead."
    try:
        return fig.to_image(format="png", scale=2), ""
    except Exception as exc:  # kaleido needs a Chrome it can start; report why instead of failing the page
        return None, f"PNG export failed: {exc}"
