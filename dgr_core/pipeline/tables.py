"""The demo's result as tables: `summarize` builds the `DemoResult` (refine summary, shift, train summaries,
evaluations and a flat table of `DemoRow`s), `demo_table` / `demo_pivot` show it (panel, benchmark).

    demo_pivot(result)     # benchmark, metric, then "base", "sft-original N=5", …: percent, mean over seeds
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

import pandas as pd

from dgr_core.config import Config
from dgr_core.jobs.results import (
    DemoEvaluation,
    DemoRefine,
    DemoResult,
    DemoRow,
    DemoStep,
    DemoTrain,
    EvalResult,
    RefineResult,
    ScoreResult,
    TrainResult,
)
from dgr_core.pipeline.children import step_result
from dgr_core.pipeline.config import DemoConfig
from dgr_core.pipeline.plan import arm_key, parse_arm


def summarize(cfg: DemoConfig, names: dict[str, str], results: Mapping[str, Config], rows: list[dict[str, Any]],
              seconds: float) -> DemoResult:
    refine = step_result(results, "refine", RefineResult)
    evaluations = {key.removeprefix("eval-"): _evaluation(step_result(results, key, EvalResult), _run_id(rows, key))
                   for key in results if key.startswith("eval-")}
    return DemoResult(
        config=cfg.to_dict(), datasets=names,
        refine=DemoRefine(refine.output_dataset, refine.n, refine.n_fell_back, refine.fallback_rate,
                          refine.fallback_reasons, refine.seconds),
        shift={which: {k: _finite(v) for k, v in step_result(results, f"score-{which}", ScoreResult).mean.items()}
               for which in ("original", "refined")},
        train={key.removeprefix("train-"): _train_summary(step_result(results, key, TrainResult), _run_id(rows, key))
               for key in results if key.startswith("train-")},
        evaluations=evaluations, table=metric_rows(evaluations),
        steps=[DemoStep(r["key"], r["kind"], r.get("run_id"), r.get("seconds"), r.get("reused")) for r in rows],
        seconds=round(seconds, 2))


def _finite(value: Any) -> float | None:
    # A mean over no tokens (a refined set without reasoning has no reasoning NLL) is NaN: null in strict JSON.
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _run_id(rows: list[dict[str, Any]], key: str) -> str | None:
    return next((r.get("run_id") for r in rows if r["key"] == key), None)


def _evaluation(res: EvalResult, run_id: str | None) -> DemoEvaluation:
    return DemoEvaluation(run_id=run_id, model=res.model, metrics=res.metrics)


def _train_summary(res: TrainResult, run_id: str | None) -> DemoTrain:
    return DemoTrain(run_id=run_id, model_ref=res.model_ref, dataset=res.dataset, n_samples=res.n_samples,
                     sample_ids=res.sample_ids, steps=res.steps, first_loss=res.first_loss,
                     final_loss=res.final_loss, seconds=res.seconds)


def split_label(label: str) -> tuple[str, int | None, int | None]:
    """"sft-refined-n10-s0" -> ("sft-refined", 10, 0); "base" -> ("base", None, None)."""
    which, n, seed = parse_arm(label)
    if n is None or seed is None:
        return label, None, None
    return label[: -len(arm_key(which, n, seed))] + which, n, seed


def metric_rows(evaluations: Mapping[str, DemoEvaluation]) -> list[DemoRow]:
    """One row per (model, N, seed, benchmark): the flat table the panel, the benchmark and the report read."""
    rows = []
    for label, ev in evaluations.items():
        model, n, seed = split_label(label)
        for bench, m in ev.metrics.items():
            lo, hi = m.ci if m.ci is not None else (None, None)
            rows.append(DemoRow(model=model, n_train=n, seed=seed, benchmark=bench, kind=m.kind, metric=m.metric,
                                value=m.value, ci_lo=lo, ci_hi=hi, n=m.n, run_id=ev.run_id))
    return rows


TABLE_COLUMNS = [f.name for f in fields(DemoRow)]


def demo_table(result: DemoResult) -> pd.DataFrame:
    """The demo's metrics as a DataFrame: model (base / sft-original / sft-refined), n_train (the budget N),
    seed, benchmark, kind, metric, value, ci_lo, ci_hi (Wilson 95%), n, run_id."""
    return pd.DataFrame([row.to_dict() for row in result.table], columns=TABLE_COLUMNS).astype(
        {"n_train": "Int64", "seed": "Int64"})


def demo_pivot(result: DemoResult) -> pd.DataFrame:
    """benchmark, metric, then one column per model and budget ("base", "sft-original N=5", …): the value in
    percent, averaged over seeds. The compact view of a demo run."""
    table = demo_table(result)
    if table.empty:
        return pd.DataFrame(columns=["benchmark", "metric"])
    table = table.assign(column=[m if pd.isna(n) else f"{m} N={n}" for m, n in zip(table["model"], table["n_train"],
                                                                                   strict=True)],
                         percent=100 * pd.to_numeric(table["value"], errors="coerce"))
    # groupby, not pivot_table: only the (benchmark, metric) pairs that exist, and a model whose value is missing
    # keeps its NaN cell instead of vanishing.
    wide = (table.groupby(["benchmark", "metric", "column"], sort=False, dropna=False)["percent"].mean()
            .unstack("column"))
    order = sorted(wide.columns, key=_column_order)
    return wide[order].reset_index().rename_axis(columns=None)


def _column_order(column: str) -> tuple[int, int]:
    model, _, n = column.partition(" N=")
    rank = {"base": 0, "sft-original": 1, "sft-refined": 2}.get(model, 3)
    return rank, int(n) if n.isdigit() else 0


DEMO_CAVEAT = ("Trained from the embedded SmolLM2-135M-Instruct: a 135M model that writes no reasoning, so these "
               "runs show the method's mechanics (shift, SFT, evaluation, the fit), not the DGR paper's numbers.")


def demo_caveat(base_models: Iterable[str]) -> str:
    """DEMO_CAVEAT when one of the base models is the embedded demo model, else ""."""
    from dgr_core.models.loading import DEMO_ALIASES

    return DEMO_CAVEAT if any(str(ref) in DEMO_ALIASES for ref in base_models) else ""
