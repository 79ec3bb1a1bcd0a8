"""Figures of the safety-tax view, their export (PNG / SVG / HTML), and the one-file lab-meeting report.

    from dgr_core.report import ReportOptions, build_report, export_figure, scatter_figure
    html = build_report(ws, ReportOptions(x_stat="nll_total", y_metric="reasoning_drop_avg"))
    Path("report.html").write_text(html)          # opens offline: plotly.js is inside, once
    png = export_figure(fig, "png")                # needs kaleido + a Chromium (see below)

Export. HTML needs nothing: the figure with plotly.js embedded. PNG and SVG are rendered by plotly's own engine,
kaleido (>= 1.0), which drives a headless Chromium: `pip install kaleido==1.5.0` and a system Chromium
(`apt-get install chromium` on Debian; kaleido finds /usr/bin/chromium, or set BROWSER_PATH). Nothing is
downloaded at run time. The first export starts one Chromium for this process (about 5 s) and keeps it for the
next ones (about 0.5 s each); kaleido closes it at exit. Without kaleido or Chromium, `export_figure` raises
`ExportError` saying what to install (`export_unavailable()` tells a page beforehand) — no fallback renderer,
so an exported PNG is always the same picture as the interactive figure.

The report is one self-contained HTML file: plotly.js inlined once in <head>, every figure as a div with its data
as JSON, tables as HTML, the configs (`job.json`) and versions of every run shown, and the fingerprints of the
datasets involved. It references no external file (no src/href to the network), so it opens offline.
"""

from __future__ import annotations

import html
import json
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from dgr_core.config import Config
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.jobs.spec import SPEC_FILE
from dgr_core.safety_tax import (
    BUDGET_MEASURES,
    DELTA_COLUMN,
    Fit,
    SafetyTaxData,
    budget_curve,
    collect,
    fit_line,
    format_table,
    results_cells,
    scatter_frame,
    shift_label,
    y_label,
)
from dgr_core.workspace import Workspace, read_json

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "html": "text/html"}
PRESENTATION_FONT = 22
INSTALL_HINT = ("PNG/SVG export needs kaleido and a Chromium: `pip install kaleido==1.5.0` and "
                "`apt-get install chromium` (or set BROWSER_PATH to a Chrome/Chromium binary). HTML export works "
                "without them.")
VARIANT_SYMBOL = {"original": "circle", "refined": "diamond"}


class ExportError(DGRError):
    """A figure cannot be exported in the asked format here (what is missing is in the message)."""


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------


HOVER = ("<b>%{customdata[0]}</b><br>base model: %{customdata[9]}<br>dataset: %{customdata[1]} (%{customdata[2]})"
         "<br>N = %{customdata[3]}, "
         "seed %{customdata[4]}<br>x = %{x:.3f}, y = %{y:.1f}<br>refusal %{customdata[5]:.1f}% · over-refusal "
         "%{customdata[6]:.1f}%<br>reasoning avg %{customdata[7]:.1f}% (base %{customdata[8]:.1f}%)<extra></extra>")
HOVER_COLUMNS = ["run_id", "dataset", "variant", "n_samples", "seed", "refusal", "over_refusal", "reasoning_avg",
                 "base_reasoning_avg", "base_model"]


def scatter_figure(frame: pd.DataFrame, fit: Fit, x_stat: str, y_metric: str, *, title: str = "") -> go.Figure:
    """One point per training run (symbol = original / refined data, colour = refusal rate) and the fitted line."""
    fig = go.Figure()
    for variant, symbol in VARIANT_SYMBOL.items():
        part = frame[frame["variant"] == variant]
        for has_refusal in (True, False):
            sub = part[part["refusal"].notna() == has_refusal]
            if sub.empty:
                continue
            marker: dict[str, Any] = {"symbol": symbol, "size": 14, "line": {"width": 1, "color": "#333"}}
            if has_refusal:
                marker.update(color=sub["refusal"].tolist(), coloraxis="coloraxis")
            else:
                marker.update(color="lightgrey")
            fig.add_trace(go.Scatter(
                x=sub["x"].tolist(), y=sub["y"].tolist(), mode="markers", marker=marker,
                name=f"{variant} data" + ("" if has_refusal else " (no refusal eval)"),
                customdata=sub[HOVER_COLUMNS].astype(object).where(sub[HOVER_COLUMNS].notna(), None).values.tolist(),
                hovertemplate=HOVER))
    if fit.ok:
        xs = [float(frame["x"].min()), float(frame["x"].max())]
        fig.add_trace(go.Scatter(x=xs, y=[fit.slope * v + fit.intercept for v in xs], mode="lines",
                                 name="least-squares fit", line={"dash": "dash", "color": "#444"}, hoverinfo="skip"))
    fig.add_annotation(text=html.escape(fit.summary()), xref="paper", yref="paper", x=0, y=1.08,
                       showarrow=False, xanchor="left", font={"size": 12})
    fig.update_layout(
        title=title or None, xaxis_title=shift_label(x_stat), yaxis_title=y_label(y_metric), template="plotly_white",
        coloraxis={"colorscale": "Viridis", "colorbar": {"title": {"text": "refusal %"}}},
        legend={"orientation": "h", "y": -0.2}, margin={"t": 80})
    return fig


def _dash(variant: str) -> str:
    return "dash" if variant == "refined" else "solid"


def budget_figure(curve: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Refusal rate and reasoning accuracy against N training samples, one line per (source, variant);
    error bars are the standard deviation over seeds."""
    measures = list(BUDGET_MEASURES)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[BUDGET_MEASURES[m] for m in measures])
    multi_base = curve["base_model"].nunique() > 1 if not curve.empty else False
    palette = pio.templates["plotly_white"].layout.colorway or ["#636efa"]
    sources = list(dict.fromkeys(curve["source_dataset"])) if not curve.empty else []
    groups = curve.groupby(["base_model", "source_dataset", "variant"], sort=False) if not curve.empty else []
    for (base, source, variant), part in groups:
        label = f"{source} · {variant}" + (f" · {base}" if multi_base else "")
        color = palette[sources.index(source) % len(palette)]
        for col, measure in enumerate(measures, start=1):
            sub = part[part["measure"] == measure].sort_values("n_samples")
            if sub.empty:
                continue
            fig.add_trace(go.Scatter(
                x=sub["n_samples"].tolist(), y=sub["mean"].tolist(), mode="lines+markers", name=label,
                legendgroup=label, showlegend=col == 1, line={"color": color, "dash": _dash(variant)},
                error_y={"type": "data", "array": sub["std"].tolist(), "visible": True},
                customdata=sub[["n_runs"]].values.tolist(),
                hovertemplate=f"{html.escape(label)}<br>N = %{{x}}<br>%{{y:.1f}}% ± %{{error_y.array:.1f}} "
                              f"(%{{customdata[0]}} runs)<extra></extra>"), row=1, col=col)
    log_x = not curve.empty and curve["n_samples"].max() >= 10 * max(curve["n_samples"].min(), 1)
    fig.update_xaxes(title_text="training samples (N)", type="log" if log_x else "linear")
    fig.update_yaxes(title_text="%", range=[0, 100])
    fig.update_layout(title=title or None, template="plotly_white", legend={"orientation": "h", "y": -0.25})
    return fig


def presentation(fig: go.Figure, font_size: int = PRESENTATION_FONT, height: int = 620) -> go.Figure:
    """A copy of `fig` for a projector: large fonts, tall, bigger markers."""
    big = go.Figure(fig)
    big.update_layout(font={"size": font_size}, height=height, title_font={"size": font_size + 6})
    big.update_annotations(font={"size": max(font_size - 6, 12)})
    big.update_traces(marker={"size": 20}, selector={"mode": "markers"})
    return big


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------

_SERVER_LOCK = threading.Lock()
_server_started = False


def export_unavailable() -> str | None:
    """Why PNG/SVG export cannot work here (what to install), or None when kaleido and a Chromium are present."""
    try:
        import kaleido  # noqa: F401
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return INSTALL_HINT
    try:
        found = Chromium.find_browser(skip_local=False)
    except Exception:  # the browser search is best effort: a failing probe must not break a page
        found = None
    return None if found else INSTALL_HINT


def _ensure_server() -> None:
    """Start kaleido's one Chromium for this process on first use (it is closed by kaleido at exit)."""
    global _server_started
    with _SERVER_LOCK:
        if not _server_started:
            import kaleido

            kaleido.start_sync_server(silence_warnings=True)
            _server_started = True


def export_figure(fig: go.Figure, fmt: str, *, width: int = 1200, height: int = 700, scale: float = 2.0) -> bytes:
    """The figure as PNG, SVG or a standalone HTML file (plotly.js inside, opens offline)."""
    fmt = fmt.lower()
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
    if fmt not in ("png", "svg"):
        raise ExportError(f"Unknown export format {fmt!r}; choose png, svg or html.")
    why = export_unavailable()
    if why:
        raise ExportError(why)
    _ensure_server()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plotly warns that per-call browser options are unused with a server
            return fig.to_image(format=fmt, width=width, height=height, scale=scale if fmt == "png" else 1)
    except Exception as exc:  # kaleido and choreographer raise their own types; the user needs the message
        raise ExportError(f"Exporting the figure as {fmt.upper()} failed: {exc}") from exc


# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ReportOptions(Config):
    """What goes into the report; saved in it, so a report says how it was made."""

    section: ClassVar[str] = "report"

    title: str = "DGR Lens — safety tax"
    notes: str = ""  # free text shown under the title
    x_stat: str = "nll_total"  # SHIFT_STATS key on the x axis
    y_metric: str = "reasoning_drop_avg"  # y metric key (see SafetyTaxData.y_choices)
    backend: str = "hf"  # whose score cache the shift is read from
    reference: str | None = None  # reference dataset for the ΔNLL statistics
    n_samples: int | None = None  # training size of the results table; None = the largest per dataset
    scatter: bool = True  # the shift-vs-tax scatter with its fit
    results: bool = True  # the paper-style results table
    budget: bool = True  # the data-budget curve
    datasets: bool = True  # dataset fingerprints
    configs: bool = True  # job.json of every run used


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:left}th{background:#f4f4f4}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}.muted{color:#666;font-size:.9em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
"""


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _figure_div(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _table_html(df: pd.DataFrame, digits: int = 1) -> str:
    if df.empty:
        return "<p class='muted'>No rows.</p>"
    return format_table(df, digits).to_html(index=False, escape=True, border=0)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("dgr-lens", "plotly", "pandas", "numpy", "scipy", "torch", "transformers", "peft"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _p(text: str, cls: str = "") -> str:
    return f"<p{f' class={cls!r}' if cls else ''}>{html.escape(text)}</p>"


def _scatter_section(data: SafetyTaxData, opts: ReportOptions) -> str:
    parts = ["<h2>Distribution shift vs. safety tax</h2>"]
    if opts.x_stat not in data.shift_choices():
        parts.append(_p(f"No run has the statistic '{opts.x_stat}' yet. {data.unscored_message()}", "note"))
        return "\n".join(parts)
    frame = scatter_frame(data, opts.x_stat, opts.y_metric)
    fit = fit_line(frame["x"], frame["y"])
    parts.append(_figure_div(scatter_figure(frame, fit, opts.x_stat, opts.y_metric), "fig-scatter"))
    parts.append(_p(f"Fit: {fit.summary()}. Intervals: bootstrap 95% over runs (seed 0). "
                    f"x: {shift_label(opts.x_stat)}; y: {y_label(opts.y_metric)}."))
    if data.unscored:
        parts.append(_p(data.unscored_message(), "note"))
    parts.append("<details><summary>Points</summary>" + _table_html(frame, 3) + "</details>")
    return "\n".join(parts)


def _results_section(data: SafetyTaxData, opts: ReportOptions) -> str:
    table = results_cells(data, opts.n_samples)
    return ("<h2>Results</h2>" + _p(f"Percent, mean over seeds; each cell: value [95% interval] n = graded "
                                    f"responses. '{DELTA_COLUMN}' = refined minus vanilla SFT in points. Every item "
                                    "counts: truncated answers are wrong, and the truncation rate and mean reasoning "
                                    "tokens are shown. Refusal: harmful prompts refused (higher is safer); "
                                    "over-refusal: benign prompts refused (lower is better).", "muted")
            + _table_html(table) + _settings_html(data))


def _settings_html(data: SafetyTaxData) -> str:
    """The evaluation setting each benchmark is compared on, and the evaluations left out (like for like)."""
    from dgr_core.evaluate.signature import describe

    parts = [_p("Compared like for like (same items, decoding, budget, judge and seeds): "
                + "; ".join(f"{b}: {describe(sig)}" for b, sig in data.settings.items()), "muted")]
    if data.excluded:
        items = "".join(f"<li><code>{html.escape(e['run'])}</code> ({html.escape(e['model'])}, "
                        f"{html.escape(e['benchmark'])}): {html.escape(e['why'])}</li>" for e in data.excluded)
        parts.append(f"<details><summary>Left out: {len(data.excluded)} evaluation(s) with other settings"
                     f"</summary><ul class='note'>{items}</ul></details>")
    return "".join(parts) if data.settings else ""


def _skipped_html(data: SafetyTaxData) -> str:
    """The finished runs left out because their result.json cannot be read, each with the reason."""
    if not data.skipped:
        return ""
    items = "".join(f"<li><code>{html.escape(run)}</code>: {html.escape(why)}</li>" for run, why in data.skipped)
    return (_p(f"Skipped {len(data.skipped)} run(s) whose result cannot be read (not in any number below):", "note")
            + f"<ul class='note'>{items}</ul>")


def _budget_section(data: SafetyTaxData) -> str:
    curve = budget_curve(data)
    if curve.empty:
        return "<h2>Data budget</h2>" + _p("No evaluated training runs yet.", "note")
    return ("<h2>Data budget</h2>" + _figure_div(budget_figure(curve), "fig-budget")
            + _p("Error bars: standard deviation over seeds (0 for a single run).", "muted")
            + "<details><summary>Values</summary>" + _table_html(curve) + "</details>")


def _datasets_section(ws: Workspace, data: SafetyTaxData) -> str:
    store = DatasetStore(ws)
    names = list(dict.fromkeys([r.dataset for r in data.records] + [r.source_dataset for r in data.records]
                               + list(data.reference.values())))
    rows = []
    for name in names:
        info = store.info(name) if store.exists(name) else None
        at_train = sorted({r.dataset_fingerprint for r in data.records if r.dataset == name and r.dataset_fingerprint})
        rows.append({"dataset": name, "fingerprint": info.fingerprint if info else "(deleted)",
                     "fingerprint at training": ", ".join(at_train) or "–", "rows": info.n_rows if info else None,
                     "origin": info.origin if info else "", "parent": (info.parent or "") if info else ""})
    notes = "".join(f"<li><code>{html.escape(run)}</code>: {html.escape(note)}</li>" for run, note in data.run_notes())
    return "<h2>Datasets</h2>" + _table_html(pd.DataFrame(rows)) + (f"<ul class='note'>{notes}</ul>" if notes else "")


def _run_ids(data: SafetyTaxData) -> list[str]:
    ids = []
    for rec in data.records:
        ids.append(rec.run_id)
        ids += [m.run_id for m in (*rec.trained.values(), *rec.base.values())]
    return list(dict.fromkeys(ids))


def _configs_section(ws: Workspace, data: SafetyTaxData) -> str:
    parts = ["<h2>Runs and configs</h2>",
             _p("The job.json of every run used above: its kind, config, creation time and package versions.",
                "muted")]
    for run_id in _run_ids(data):
        path = ws.runs / run_id / SPEC_FILE
        spec = read_json(path) if path.is_file() else {"missing": str(path)}
        parts.append(f"<details><summary><code>{html.escape(run_id)}</code> · {html.escape(str(spec.get('kind')))}"
                     f"</summary><pre>{html.escape(json.dumps(spec, indent=2, sort_keys=True, default=str), quote=False)}</pre>"
                     "</details>")
    return "\n".join(parts)


def build_report(ws: Workspace, options: ReportOptions | None = None, data: SafetyTaxData | None = None) -> str:
    """The whole report as one HTML string (see the module docstring)."""
    opts = options or ReportOptions()
    data = data if data is not None else collect(ws, backend=opts.backend, reference=opts.reference)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    body = [f"<h1>{html.escape(opts.title)}</h1>",
            _p(f"Generated {stamp} from workspace {ws.root} · {len(data.records)} training run(s) · "
               f"scores from backend '{data.backend}'", "muted")]
    if opts.notes:
        body.append(_p(opts.notes))
    body.append(_skipped_html(data))
    if data.empty:
        body.append(_p("No finished training runs in this workspace yet: train a model, evaluate it and its base "
                       "model, then build the report again.", "note"))
    else:
        body += _sections(ws, data, opts)
    body.append("<h2>About this report</h2><pre>" + html.escape(json.dumps(
        {"options": opts.to_dict(), "versions": _versions()}, indent=2, default=str, ensure_ascii=False),
        quote=False) + "</pre>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(opts.title)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{_plotly_js()}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def _patterns_section(ws: Workspace, data: SafetyTaxData) -> str:
    """Risky-pattern rates of each run's training data (dgr_core.audit), when a training dataset is audited."""
    from dgr_core.audit.training import format_rates
    from dgr_core.safety_tax import pattern_rates

    table = pattern_rates(ws, data)
    if table.empty or not (table["judge"] != "").any():
        return ""
    return ("<h3>Risky patterns in each run's training data</h3>" + _p(
        "Rate [Wilson 95% interval] of training rows tagged with each pattern of arXiv 2505.15404; judge named "
        "per row ('heuristic' = keyword rules, no model).", "muted") + format_rates(table).to_html(
        index=False, escape=True, border=0))


def _sections(ws: Workspace, data: SafetyTaxData, opts: ReportOptions) -> list[str]:
    out = []
    if opts.scatter:
        out.append(_scatter_section(data, opts))
    if opts.results:
        out.append(_results_section(data, opts))
        out.append(_patterns_section(ws, data))
    if opts.budget:
        out.append(_budget_section(data))
    if opts.datasets:
        out.append(_datasets_section(ws, data))
    if opts.configs:
        out.append(_configs_section(ws, data))
    return out
