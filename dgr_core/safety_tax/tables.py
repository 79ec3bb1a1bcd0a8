"""The paper-style results table of the safety-tax view, its printable cells, and the pattern-rate table.

    table = results_table(data)                  # base / SFT / SFT on refined rows, percent, mean over seeds
    cells = results_cells(data)                  # the same, each cell "value [low, high] n=…"
    shown = format_table(table)                  # floats to 1 decimal, missing as "–" (page and report)

Rows: per base model a "base model" row, then per source dataset "SFT" (original data) and "SFT on refined" at one
training size N. A cell's interval is its run's own for one run; for several seeds the per-item outcomes of their
outputs.jsonl are pooled and items resampled (`pooled_rate`, a cluster bootstrap by dgr_core.evaluate.runner).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.safety_tax.records import BenchResult, Metrics, RunRecord, SafetyTaxData, attr_mean, mean_of
from dgr_core.workspace import Workspace


def _bench_columns(data: SafetyTaxData) -> list[tuple[str, str]]:
    """(column name, benchmark) in the literature's order: refusal, over-refusal, reasoning."""
    prefix = {"harmful": "refusal: ", "benign": "over-refusal: ", "reasoning": ""}
    return [(f"{prefix.get(kind, '')}{b}", b) for b, kind in data.benchmarks.items()]


def _metric_row(data: SafetyTaxData, metrics_list: list[Metrics]) -> dict[str, float]:
    """Benchmark columns (percent, mean over the runs that have them) + the reasoning average."""
    row: dict[str, float] = {}
    for col, bench in _bench_columns(data):
        values = [m[bench].value for m in metrics_list if bench in m]
        row[col] = 100 * float(np.mean(values)) if values else float("nan")
    reasoning = data.reasoning_benchmarks()
    avgs = [mean_of(m, reasoning) for m in metrics_list]
    avgs = [a for a in avgs if math.isfinite(a)]
    row["reasoning avg"] = 100 * float(np.mean(avgs)) if avgs else float("nan")
    row[TRUNCATION_COLUMN] = 100 * attr_mean(metrics_list, reasoning, "truncation_rate")
    row[TOKENS_COLUMN] = attr_mean(metrics_list, reasoning, "mean_reasoning_tokens")
    return row


TABLE_LEAD = ["base model", "method", "dataset", "N", "runs"]
DELTA_COLUMN = "Δ reasoning avg vs SFT"
TRUNCATION_COLUMN = "truncated % (reasoning)"  # cut at the token budget (counted wrong in the accuracy)
TOKENS_COLUMN = "reasoning tokens"  # mean thinking tokens per reasoning answer (overthinking is part of the tax)
FALLBACK_COLUMN = "refine fallback %"  # refined rows: share of training samples whose rewrite fell back
# The columns after the benchmark ones, in order. Per-sample pattern rates (issue #16) belong after these.
TAIL_COLUMNS = ["reasoning avg", DELTA_COLUMN, TRUNCATION_COLUMN, TOKENS_COLUMN, FALLBACK_COLUMN]


def results_table(data: SafetyTaxData, n_samples: int | None = None) -> pd.DataFrame:
    """The paper-style table: per base model, a "base model" row, then per source dataset "SFT" (original data)
    and "SFT on refined" rows, with metrics in percent, averaged over seeds (`format_table` makes it printable;
    `results_cells` prints each cell with its interval and n).

    `n_samples` picks the training size; None takes, per (base model, source dataset), the largest N that has runs
    (the variants are compared at the same N when both have it). After the benchmark columns come the reasoning
    average, its difference to the vanilla SFT row (refined rows; points), the truncation rate and mean reasoning
    tokens of the reasoning benchmarks, and a refined row's refinement fallback rate (`TAIL_COLUMNS`)."""
    rows = []
    for lead, metrics_list, recs in _row_groups(data, n_samples):
        fallback = [r.fallback_rate for r in recs if r.fallback_rate is not None]
        rows.append({**lead, **_metric_row(data, metrics_list),
                     FALLBACK_COLUMN: 100 * float(np.mean(fallback)) if fallback else float("nan")})
    _add_deltas(rows)
    columns = TABLE_LEAD + [c for c, _ in _bench_columns(data)] + TAIL_COLUMNS
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"N": "Int64", "runs": "Int64"})  # the base-model row has neither: <NA>, not 0


def _add_deltas(rows: list[dict[str, Any]]) -> None:
    """The refined row's reasoning average minus the SFT row's of the same base model and source dataset."""
    vanilla = {(r["base model"], r["_source"]): r["reasoning avg"] for r in rows if r["method"] == "SFT"}
    for r in rows:
        if r["method"] == "SFT on refined":
            r[DELTA_COLUMN] = r["reasoning avg"] - vanilla.get((r["base model"], r["_source"]), float("nan"))


RowGroup = tuple[dict[str, Any], list[Metrics], list[RunRecord]]


def _row_groups(data: SafetyTaxData, n_samples: int | None) -> list[RowGroup]:
    """(lead columns, the metrics averaged in the row, its training runs) per table row."""
    groups: list[RowGroup] = []
    for base in dict.fromkeys(r.base_model for r in data.records):
        lead = {"base model": base, "method": "base model", "dataset": "–", "N": None, "runs": None, "_source": ""}
        groups.append((lead, [data.base_metrics.get(base, {})], []))
        mine = [r for r in data.records if r.base_model == base]
        for source in dict.fromkeys(r.source_dataset for r in mine):
            groups += _source_groups([r for r in mine if r.source_dataset == source], n_samples)
    return groups


def _pick_n(runs: list[RunRecord], n_samples: int | None) -> int | None:
    sizes = {r.n_samples for r in runs}
    if n_samples is not None:
        return n_samples if n_samples in sizes else None
    return max(sizes) if sizes else None


def _source_groups(runs: list[RunRecord], n_samples: int | None) -> list[RowGroup]:
    target = _pick_n(runs, n_samples)
    out = []
    for variant, method in (("original", "SFT"), ("refined", "SFT on refined")):
        mine = [r for r in runs if r.variant == variant]
        n = target if any(r.n_samples == target for r in mine) else (None if n_samples else _pick_n(mine, None))
        chosen = [r for r in mine if r.n_samples == n]
        if chosen:
            lead = {"base model": chosen[0].base_model, "method": method, "N": n, "runs": len(chosen),
                    "dataset": ", ".join(dict.fromkeys(r.dataset for r in chosen)),
                    "_source": chosen[0].source_dataset}
            out.append((lead, [r.trained for r in chosen], chosen))
    return out


def results_cells(data: SafetyTaxData, n_samples: int | None = None, digits: int = 1) -> pd.DataFrame:
    """`results_table` for reading: each benchmark cell is "value [low, high] n=…" (percent; the interval is the
    run's own for one run, a cluster bootstrap over items pooling the runs' outputs for several seeds; n counts
    every graded response), the other columns as `format_table` prints them."""
    table = format_table(results_table(data, n_samples), digits)
    for i, (_, metrics_list, _) in enumerate(_row_groups(data, n_samples)):
        for col, bench in _bench_columns(data):
            table.loc[i, col] = _cell([m[bench] for m in metrics_list if bench in m], digits)
    return table


def _cell(results: list[BenchResult], digits: int) -> str:
    if not results:
        return "–"
    value, ci, n = pooled_rate(results)
    interval = f" [{100 * ci[0]:.{digits}f}, {100 * ci[1]:.{digits}f}]" if ci else ""
    return f"{100 * value:.{digits}f}{interval} n={n}"


def pooled_rate(results: list[BenchResult]) -> tuple[float, tuple[float, float] | None, int]:
    """(mean value, interval, n) of one benchmark over one or several evaluation runs (e.g. training seeds).
    Several runs: the per-item outcomes of all their outputs.jsonl are pooled and items resampled (cluster
    bootstrap), so the interval accounts for the runs without treating their items as independent."""
    value = float(np.mean([r.value for r in results]))
    n = sum(r.n for r in results)
    if len(results) == 1:
        return value, results[0].ci, n
    from dgr_core.evaluate.runner import OUTPUTS_FILE, rate_with_ci, read_outputs

    bench = next(iter(r.signature.get("benchmark") for r in results), None)
    records = [rec for r in results if r.run_dir
               for rec in read_outputs(Path(r.run_dir) / OUTPUTS_FILE) if rec.get("benchmark") == bench]
    if len(records) < n or not records:  # outputs missing or cut: no pooled interval rather than a wrong one
        return value, None, n
    _, ci = rate_with_ci(results[0].kind, records)
    return value, ((float(ci[0]), float(ci[1])) if ci else None), n


def format_table(df: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A printable copy: floats to `digits` decimals, missing values as "–" (for the page and the report)."""
    out = df.copy().astype(object)
    for col in df.columns:
        is_float = pd.api.types.is_float_dtype(df[col])
        out[col] = [("–" if _missing(v) else f"{v:.{digits}f}" if is_float else str(v)) for v in df[col]]
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like cells (e.g. seeds) are never "missing"
        return False


def pattern_rates(ws: Workspace, data: SafetyTaxData) -> pd.DataFrame:
    """Risky-pattern rates (Wilson 95% intervals) of each run's training rows, from its dataset's audit
    (`dgr_core.audit.training`: a judge model's tags where they exist, else the heuristic's; NaN when unaudited)."""
    from dgr_core.audit.training import RunRows, run_pattern_rates

    return run_pattern_rates(ws, [RunRows(r.run_id, r.dataset, r.variant, r.sample_ids) for r in data.records])
