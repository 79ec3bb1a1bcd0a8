"""Plotly figures of the Datasets page, drawn from tables `dgr_core.data.stats` computed. No statistics here.

    st.plotly_chart(length_histogram(stats.lengths_long(table)), key="ds_hist")
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

SEGMENT_ORDER = ["prompt", "reasoning", "answer", "response"]
SEGMENT_COLORS = dict(zip(SEGMENT_ORDER, px.colors.qualitative.Safe, strict=False))
MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}


def length_histogram(long: pd.DataFrame, unit: str = "target-model tokens", nbins: int = 40) -> go.Figure:
    """One histogram panel per segment (prompt, reasoning, answer) of per-sample lengths; own x scale each."""
    present = [s for s in SEGMENT_ORDER if s in set(long["segment"])]  # no empty panels
    fig = px.histogram(long, x="tokens", facet_col="segment", color="segment", nbins=nbins,
                       category_orders={"segment": present}, color_discrete_map=SEGMENT_COLORS,
                       labels={"tokens": unit, "count": "samples"})
    fig.update_xaxes(matches=None, showticklabels=True)  # segments have very different scales…
    fig.for_each_trace(lambda t: t.update(bingroup=t.name))  # …so each gets its own bins
    fig.update_yaxes(title_text="samples", col=1)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=320, margin=MARGIN, showlegend=False, bargap=0.05)
    return fig


def label_bar(counts: pd.DataFrame, title: str, top: int = 20) -> go.Figure:
    """Horizontal bars of the `top` most frequent labels (`label`, `count`), the largest on top."""
    shown = counts.head(top).iloc[::-1]
    fig = px.bar(shown, x="count", y="label", orientation="h", title=title, labels={"label": "", "count": "rows"})
    fig.update_layout(height=max(200, 26 * len(shown) + 80), margin=MARGIN)
    return fig
