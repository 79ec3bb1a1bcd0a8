"""The report and the figure exports: a self-contained HTML file that carries the figures' data, the configs and
the dataset fingerprints; PNG / SVG / HTML exports that are what they claim to be.

PNG/SVG export needs kaleido (pip) and a Chromium (apt `chromium`, which .ci/run installs): without them
`test_png_and_svg_export` fails with the install hint rather than skipping, so CI cannot silently lose it.
"""

from __future__ import annotations

import html as htmllib
import json
import sys
from html.parser import HTMLParser

import pytest
from test_safety_tax import plant_workspace

from dgr_core.data.store import DatasetStore
from dgr_core.report import (
    PRESENTATION_FONT,
    ExportError,
    ReportOptions,
    budget_figure,
    build_report,
    export_figure,
    export_unavailable,
    presentation,
    scatter_figure,
)
from dgr_core.safety_tax import budget_curve, collect, fit_line, scatter_frame

URL_ATTRS = {"src", "href", "srcset", "data", "action", "poster", "background", "xlink:href"}


class _Refs(HTMLParser):
    """Every URL-carrying attribute and every tag name of a document. Script bodies are raw text to the parser,
    so URLs *inside* plotly.js (license comments, help links, SVG namespaces) are not attributes and not seen."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(tag, k, v or "") for k, v in attrs if k.lower() in URL_ATTRS]


def _external_refs(doc: str) -> list[tuple[str, str, str]]:
    parser = _Refs()
    parser.feed(doc)
    return [r for r in parser.refs if r[2].strip().lower().startswith(("http:", "https:", "//", "ftp:"))]


def _tags(doc: str) -> list[str]:
    parser = _Refs()
    parser.feed(doc)
    return parser.tags


def _figure_traces(doc: str, div_id: str) -> list[dict]:
    """The traces passed to Plotly.newPlot for one figure div, decoded from the report."""
    marker = f'Plotly.newPlot(                        "{div_id}",'
    start = doc.index(marker) + len(marker)
    traces, _ = json.JSONDecoder().raw_decode(doc[start:].lstrip())
    return traces


@pytest.fixture
def planted(ws):
    return ws, plant_workspace(ws)


def test_report_is_self_contained(planted):
    ws, _ = planted
    doc = build_report(ws, ReportOptions(backend="fake"))
    assert _external_refs(doc) == []
    tags = _tags(doc)
    assert "link" not in tags and "iframe" not in tags and "img" not in tags
    assert "<script src" not in doc.lower() and "@import" not in doc
    from plotly.offline import get_plotlyjs

    assert doc.count(get_plotlyjs()[:300]) == 1  # plotly.js is inlined exactly once
    assert tags.count("script") >= 3  # the bundle + one per figure


def test_report_carries_the_figure_data(planted):
    ws, runs = planted
    doc = build_report(ws, ReportOptions(backend="fake", x_stat="nll_total", y_metric="reasoning_avg"))
    frame = scatter_frame(collect(ws, backend="fake"), "nll_total", "reasoning_avg")
    points = {}
    for trace in _figure_traces(doc, "fig-scatter"):
        if trace.get("mode") == "markers":
            points.update({c[0]: (x, y) for c, x, y in zip(trace["customdata"], trace["x"], trace["y"], strict=True)})
    assert set(points) == set(runs)
    for _, row in frame.iterrows():
        assert points[row["run_id"]] == pytest.approx((row["x"], row["y"]))
    budget = _figure_traces(doc, "fig-budget")
    assert {t["name"] for t in budget} == {"star · original", "star · refined"}
    assert "Pearson r = -1.00" in doc


def test_report_carries_configs_and_fingerprints(planted):
    ws, runs = planted
    doc = build_report(ws, ReportOptions(backend="fake"))
    for run_id in [next(iter(runs)), "20250101-000000-eval-base"]:
        spec = json.loads((ws.runs / run_id / "job.json").read_text())
        assert htmllib.escape(json.dumps(spec, indent=2, sort_keys=True), quote=False) in doc
    assert "20241231-000000-eval-base-old" not in doc  # a superseded evaluation is not a source of any number
    for name in ("star", "star-dgr"):
        assert DatasetStore(ws).info(name).fingerprint in doc
    assert '"dgr-lens"' in doc and '"x_stat": "nll_total"' in doc


def test_report_sections_follow_the_options(planted):
    ws, _ = planted
    doc = build_report(ws, ReportOptions(backend="fake", budget=False, configs=False, title="Lab <meeting>"))
    assert "fig-scatter" in doc and "fig-budget" not in doc and "Runs and configs" not in doc
    assert "Lab &lt;meeting&gt;" in doc and "Lab <meeting>" not in doc
    assert ReportOptions.from_dict(json.loads(json.dumps(ReportOptions(n_samples=4).to_dict()))) == \
        ReportOptions(n_samples=4)


def test_report_on_empty_workspace(ws):
    doc = build_report(ws)
    assert "No finished training runs" in doc and _external_refs(doc) == []


def test_report_says_what_is_not_scored(ws):
    plant_workspace(ws, scores=False)
    doc = build_report(ws, ReportOptions(backend="fake"))
    assert "Not scored yet" in doc and "fig-scatter" not in doc and "fig-budget" in doc


# ---------------------------------------------------------------------------------------------------------------
# Figures and export
# ---------------------------------------------------------------------------------------------------------------


def test_scatter_figure_fit_and_hover(planted):
    ws, runs = planted
    frame = scatter_frame(collect(ws, backend="fake"), "nll_total", "reasoning_drop_avg")
    fig = scatter_figure(frame, fit_line(frame["x"], frame["y"]), "nll_total", "reasoning_drop_avg")
    names = [t.name for t in fig.data]
    assert "least-squares fit" in names and {"original data", "refined data"} <= set(names)
    ids = {c[0] for t in fig.data if t.customdata is not None for c in t.customdata}
    assert ids == set(runs)
    few = frame.head(2)
    assert "least-squares fit" not in [t.name for t in scatter_figure(few, fit_line(few["x"], few["y"]),
                                                                      "nll_total", "reasoning_drop_avg").data]


def test_presentation_mode_enlarges_fonts(planted):
    ws, _ = planted
    fig = budget_figure(budget_curve(collect(ws, backend="fake")))
    big = presentation(fig)
    assert big.layout.font.size == PRESENTATION_FONT and fig.layout.font.size is None  # the original is untouched


def test_html_export_is_standalone(planted):
    ws, _ = planted
    fig = budget_figure(budget_curve(collect(ws, backend="fake")))
    doc = export_figure(fig, "html").decode()
    assert doc.lstrip().lower().startswith(("<!doctype html", "<html")) and _external_refs(doc) == []
    with pytest.raises(ExportError, match="png, svg or html"):
        export_figure(fig, "gif")


def test_png_and_svg_export(planted):
    why = export_unavailable()
    assert why is None, why
    ws, _ = planted
    fig = budget_figure(budget_curve(collect(ws, backend="fake")))
    png = export_figure(fig, "png", width=600, height=400, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    svg = export_figure(fig, "svg").decode().lstrip()
    assert svg.startswith(("<svg", "<?xml")) and "star · refined" in svg


def test_export_without_kaleido_says_what_to_install(monkeypatch):
    import plotly.graph_objects as go

    monkeypatch.setitem(sys.modules, "kaleido", None)
    assert "kaleido" in (export_unavailable() or "")
    with pytest.raises(ExportError, match="kaleido"):
        export_figure(go.Figure(), "png")


@pytest.mark.browser
def test_report_renders_in_chromium_with_the_network_cut(planted, tmp_path):
    """Open the report from disk in headless Chromium with every non-file request aborted: the figures draw and
    not one request leaves the file."""
    import shutil

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        pytest.skip("no Chromium on this machine (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    ws, _ = planted
    path = tmp_path / "report.html"
    path.write_text(build_report(ws, ReportOptions(backend="fake")), encoding="utf-8")
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (outside.append(route.request.url), route.abort()))
        page.goto(path.as_uri())
        page.wait_for_selector("#fig-budget .main-svg", timeout=20_000)
        drawn = page.locator("#fig-scatter .scatterlayer .point").count()
        browser.close()
    assert outside == []
    assert drawn == 8  # one marker per planted training run
