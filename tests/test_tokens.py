"""Chart and token-grid builders of the shift and compare pages (`dgr_ui/tokens.py`): every figure is built from
the core's tables, keeps the mapping back to samples, and the comparison image renders to PNG for slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dgr_core.compare import SURPRISAL_MAX, TokenView
from dgr_core.report import export_unavailable
from dgr_core.scoring.segments import ANSWER, CLOSE, OPEN, REASONING

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ui():
    from dgr_ui import tokens

    return tokens


def _long() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for name, shift in (("own", 0.0), ("external", 1.0)):
        for seg in ("reasoning", "answer", "total"):
            for i in range(20):
                rows.append({"dataset": name, "id": f"{name}-{i}", "category": "c", "segment": seg,
                             "nll": 2.0 + shift + rng.normal()})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("kind", ["histogram", "ecdf"])
def test_distribution_figure_overlays_datasets_per_segment(ui, kind):
    long = _long()
    fig = ui.nll_distribution_figure(long, kind)
    assert {t.name for t in fig.data} == {"own", "external"} and len(fig.data) == 6  # 2 datasets x 3 segments
    assert sorted(a.text for a in fig.layout.annotations) == ["answer", "reasoning", "total"]
    assert sum(len(t.x) for t in fig.data) == len(long)


def test_map_figure_keeps_dataset_and_id_on_every_point(ui):
    points = pd.DataFrame({"dataset": ["a", "a", "b"], "id": ["1", "2", "3"], "category": ["x", "y", "x"],
                           "nll": [1.0, 2.0, 3.0], "prompt": ["p", "q", "r"]})
    coords = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    for color in ("dataset", "category", "NLL"):
        fig = ui.map_figure(points, coords, color)
        # plotly express appends the hover columns; selections read the first two (analysis.selection_ids)
        got = sorted((tuple(c[:2]), x, y) for t in fig.data for c, x, y in zip(t.customdata, t.x, t.y, strict=True))
        assert got == [(("a", "1"), 0.0, 1.0), (("a", "2"), 1.0, 0.0), (("b", "3"), 2.0, 2.0)]
        assert fig.layout.dragmode == "lasso"
    assert ui.map_figure(points, coords[:, :1]).data[0].y is not None  # a 1-D map still draws


def test_category_figure_shows_means_or_the_shift(ui):
    breakdown = pd.DataFrame({"own": [1.0, 2.0], "ext": [1.5, 4.0], "Δ ext": [0.5, 2.0], "n (own)": [3, 4],
                              "n (ext)": [3, 4]}, index=pd.Index(["a", "b"], name="category"))
    means = ui.category_figure(breakdown)
    assert {t.name for t in means.data} == {"own", "ext"}
    delta = ui.category_figure(breakdown, delta=True)
    assert [t.name for t in delta.data] == ["ext"] and list(delta.data[0].y) == [0.5, 2.0]


def test_segment_figure_plots_both_sides(ui):
    figures = pd.DataFrame({"NLL A": [1.0, 2.0, np.nan], "NLL B": [1.5, 2.5, 3.0]},
                           index=["reasoning", "answer", "total"])
    fig = ui.segment_figure(figures, "orig", "refined")
    assert [t.name for t in fig.data] == ["orig", "refined"] and list(fig.data[1].y) == [1.5, 2.5, 3.0]


def _view() -> TokenView:
    pieces = ["<think>\n", "Let", " me", "", "é", "\n</think>\n\n", "Yes", " <b>", "\n"]
    lps = np.array([-0.1, -2.0, -0.5, -1.0, -0.5, -0.1, -4.0, -20.0, -0.2])
    segs = np.array([OPEN, REASONING, REASONING, REASONING, REASONING, CLOSE, ANSWER, ANSWER, ANSWER])
    return TokenView(pieces, lps, np.arange(1, 10), segs)


def test_token_grid_maps_each_cell_to_its_tokens(ui):
    z, text, hover, labels, cut = ui.token_grid(_view(), per_row=2)
    assert labels == ["think_open 1", "reasoning 2", "3", "think_close 4", "answer 5", "6"] and not cut
    assert text[1] == ["Let", " me"] and text[2] == ["é", ""]  # the split character is one cell
    assert z[2][0] == pytest.approx(1.5) and z[2][1] is None  # its surprisal sums both tokens; padding empty
    assert text[4] == ["Yes", " &lt;b&gt;"] and z[4] == [pytest.approx(4.0), pytest.approx(20.0)]
    assert text[5] == ["⏎", ""] and "rank 8" in hover[4][1]
    assert all(len(row) == 2 for rows in (z, text, hover) for row in rows)
    z, _, _, labels, cut = ui.token_grid(_view(), per_row=2, max_rows=3)
    assert cut and len(z) == 3


def test_comparison_figure_and_png_for_slides(ui):
    fig = ui.comparison_figure({"A · orig": _view(), "B · refined": _view()}, title="orig vs refined")
    assert len(fig.data) == 2 and all(t.zmax == SURPRISAL_MAX for t in fig.data)
    assert [a.text for a in fig.layout.annotations] == ["A · orig", "B · refined"]
    png, why = ui.export_png(fig)
    if export_unavailable() is None:
        assert why == "" and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    else:
        assert png is None and "kaleido" in why
