"""The data behind the safety-tax figures: one scatter row per training run, and the data-budget curve.

    frame = scatter_frame(data, "nll_total", "reasoning_drop_avg")   # x = shift, y = reasoning (drop), hover cols
    curve = budget_curve(data)                   # N training samples vs refusal / reasoning, mean ± std over seeds

Values are in percent (accuracy drops in percentage points); a run without a needed evaluation or shift value is
left out of the scatter rather than drawn at zero. The plotly figures themselves are drawn by dgr_core.report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dgr_core.errors import DGRError
from dgr_core.safety_tax.records import RunRecord, SafetyTaxData, attr_mean, kind_mean, mean_of, shift_label


def y_value(rec: RunRecord, key: str, reasoning: Sequence[str]) -> float:
    """A run's y metric in percent (points for drops); NaN when a needed evaluation is missing.

    A drop averages only the benchmarks both the trained and the base model were evaluated on, so a missing
    base evaluation never turns into a fake drop."""
    if key == "reasoning_avg":
        return 100 * mean_of(rec.trained, reasoning)
    if key == "reasoning_drop_avg":
        both = [b for b in reasoning if b in rec.trained and b in rec.base]
        return 100 * (mean_of(rec.base, both) - mean_of(rec.trained, both))
    kind, _, bench = key.partition(":")
    if kind == "reasoning":
        return 100 * mean_of(rec.trained, [bench])
    if kind == "reasoning_drop":
        return 100 * (mean_of(rec.base, [bench]) - mean_of(rec.trained, [bench]))
    raise DGRError(f"Unknown y metric {key!r}.")


def scatter_frame(data: SafetyTaxData, x_stat: str, y_metric: str) -> pd.DataFrame:
    """One row per training run with both an x (shift) and a y value; hover columns included."""
    shift_label(x_stat)  # validates the key
    reasoning = data.reasoning_benchmarks()
    rows = []
    for rec in data.records:
        rows.append({
            "run_id": rec.run_id, "name": rec.name, "base_model": rec.base_model, "dataset": rec.dataset,
            "source_dataset": rec.source_dataset, "variant": rec.variant, "n_samples": rec.n_samples,
            "seed": rec.seed, "x": rec.shift.get(x_stat, float("nan")), "y": y_value(rec, y_metric, reasoning),
            "refusal": 100 * kind_mean(rec.trained, "harmful"),
            "over_refusal": 100 * kind_mean(rec.trained, "benign"),
            "reasoning_avg": 100 * mean_of(rec.trained, reasoning),
            "base_reasoning_avg": 100 * mean_of(rec.base, reasoning),
            "truncation_rate": 100 * attr_mean([rec.trained], reasoning, "truncation_rate"),
            "reasoning_tokens": attr_mean([rec.trained], reasoning, "mean_reasoning_tokens"),
            "fallback_rate": 100 * rec.fallback_rate if rec.fallback_rate is not None else float("nan"),
        })
    frame = pd.DataFrame(rows, columns=SCATTER_COLUMNS)
    return frame[np.isfinite(frame["x"].astype(float)) & np.isfinite(frame["y"].astype(float))].reset_index(drop=True)


SCATTER_COLUMNS = ["run_id", "name", "base_model", "dataset", "source_dataset", "variant", "n_samples", "seed", "x",
                   "y", "refusal", "over_refusal", "reasoning_avg", "base_reasoning_avg", "truncation_rate",
                   "reasoning_tokens", "fallback_rate"]


BUDGET_MEASURES = {"refusal": "refusal rate (%)", "reasoning_avg": "reasoning accuracy, average (%)"}


def budget_curve(data: SafetyTaxData) -> pd.DataFrame:
    """N training samples against refusal rate and average reasoning accuracy, original vs refined.

    One row per (base model, source dataset, variant, N, measure): mean over the runs (seeds), the sample standard
    deviation (0 for a single run) as the error bar, and the number of runs."""
    reasoning = data.reasoning_benchmarks()
    long = []
    for rec in data.records:
        values = {"refusal": 100 * kind_mean(rec.trained, "harmful"),
                  "reasoning_avg": 100 * mean_of(rec.trained, reasoning)}
        for measure, value in values.items():
            if math.isfinite(value):
                long.append({"base_model": rec.base_model, "source_dataset": rec.source_dataset,
                             "variant": rec.variant, "n_samples": rec.n_samples, "measure": measure,
                             "value": value, "seed": rec.seed})
    keys = ["base_model", "source_dataset", "variant", "n_samples", "measure"]
    columns = keys + ["mean", "std", "n_runs", "seeds"]
    if not long:
        return pd.DataFrame(columns=columns)
    grouped = pd.DataFrame(long).groupby(keys, sort=True)
    out = grouped["value"].agg(mean="mean", std=lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                               n_runs="count").reset_index()
    out["seeds"] = grouped["seed"].agg(lambda s: sorted({int(v) for v in s if v is not None and v == v})).to_numpy()
    return out[columns]
