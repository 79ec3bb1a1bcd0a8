"""The safety-tax view: does the distribution shift of the SFT data explain the reasoning a model loses?

Everything here is read from files the jobs wrote: no model weights are loaded and no score is computed (finding
the exact score-cache entry of an `hf` model reads its tokenizer and hashes its weight files, memoized).

    data = collect(ws, backend="hf", reference="demo-self-generated")
    frame = scatter_frame(data, "nll_total", "reasoning_drop_avg")    # one row per training run
    fit = fit_line(frame["x"], frame["y"])                             # slope, Pearson / Spearman + bootstrap CIs
    table = results_table(data)                                        # base / SFT / SFT on refined data
    curve = budget_curve(data)                                         # N samples vs refusal and accuracy

The parts, each with its own docstring:
- `records`: RunRecord (one training run, joined), BenchResult, SafetyTaxData and the axis labels;
- `join`: `collect`, reading run results through their typed Result, and the like-for-like join on eval
  signatures (what is left out and why; unreadable results in `SafetyTaxData.skipped`);
- `shift`: the shift of each run's training data, read from the score cache under its base model;
- `fit`: the line and correlations with bootstrap intervals;
- `figures`: the scatter frame and the data-budget curve; `tables`: the paper-style results table and its cells.

Units: metrics are stored as fractions (as `evaluate` writes them); `scatter_frame`, `results_table` and
`budget_curve` give them in percent (accuracy drops in percentage points), the way papers report them.
NLL is in nats per token.
"""

from dgr_core.safety_tax.figures import BUDGET_MEASURES, SCATTER_COLUMNS, budget_curve, scatter_frame, y_value
from dgr_core.safety_tax.fit import MIN_FIT_POINTS, Fit, fit_line
from dgr_core.safety_tax.join import (
    REFINED_ORIGIN,
    AllEvaluations,
    all_evaluations,
    choose_settings,
    collect,
    evaluations,
    pick_metrics,
)
from dgr_core.safety_tax.records import (
    SEGMENTS,
    SHIFT_HELP,
    SHIFT_STATS,
    BenchResult,
    Metrics,
    RunRecord,
    SafetyTaxData,
    shift_label,
    y_label,
)
from dgr_core.safety_tax.shift import Found, ScoreReader
from dgr_core.safety_tax.tables import (
    DELTA_COLUMN,
    FALLBACK_COLUMN,
    TABLE_LEAD,
    TAIL_COLUMNS,
    TOKENS_COLUMN,
    TRUNCATION_COLUMN,
    RowGroup,
    format_table,
    pattern_rates,
    pooled_rate,
    results_cells,
    results_table,
)

__all__ = [
    "BUDGET_MEASURES", "DELTA_COLUMN", "FALLBACK_COLUMN", "MIN_FIT_POINTS", "REFINED_ORIGIN", "SCATTER_COLUMNS",
    "SEGMENTS", "SHIFT_HELP", "SHIFT_STATS", "TABLE_LEAD", "TAIL_COLUMNS", "TOKENS_COLUMN", "TRUNCATION_COLUMN",
    "AllEvaluations", "BenchResult", "Fit", "Found", "Metrics", "RowGroup", "RunRecord", "SafetyTaxData",
    "ScoreReader", "all_evaluations", "budget_curve", "choose_settings", "collect", "evaluations", "fit_line",
    "format_table", "pattern_rates", "pick_metrics", "pooled_rate", "results_cells", "results_table",
    "scatter_frame", "shift_label", "y_label", "y_value",
]
