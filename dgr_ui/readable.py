"""Numbers and configs the way people read them: for tables on the pages (the Runs page first).

    readable(0.000300)            -> "3.0e-04"      readable(2.897474) -> "2.9"     readable(155.77) -> "156"
    settings_table(config)        -> DataFrame(setting, value): nested dicts as dotted keys, values as text
    metrics_view(metrics_table)   -> value and 95% interval as percentages ("52%", "39–65%"), counts as integers

Display only: the files keep full precision, and the raw JSON stays one click away on the page.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from dgr_core.runs import flatten

MISSING = "–"


def readable(value: Any) -> str:
    """A value as short text: floats to 3 significant digits (tiny ones in e-notation, large ones with thousands
    separators), lists joined with commas, None/NaN as "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value) if value else MISSING
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False) if value else MISSING
    return str(value)


def _float(v: float) -> str:
    if v == 0 or math.isinf(v):
        return str(v).replace("inf", "∞")
    if abs(v) < 1e-3:
        return f"{v:.1e}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def settings_table(d: dict[str, Any] | None) -> pd.DataFrame:
    """A (nested) config or status as a two-column table: dotted setting name, readable value."""
    rows = [{"setting": k, "value": readable(v)} for k, v in flatten(d or {}).items()]
    return pd.DataFrame(rows, columns=["setting", "value"])


def percent(value: Any) -> str:
    return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def interval(lo: Any, hi: Any) -> str:
    if MISSING in (percent(lo), percent(hi)):
        return MISSING
    return f"{100 * lo:.0f}–{100 * hi:.0f}%"


PERCENT_COLUMNS = ("value", "pass_at_k", "truncation_rate")


def metrics_view(table: pd.DataFrame) -> pd.DataFrame:
    """`dgr_core.runs.metrics_table` for reading: rates and the 95% interval in percent, counts as integers, the
    other columns as readable text (whichever columns the table has)."""
    out = table[[c for c in table.columns if c not in ("ci_low", "ci_high")]].copy().astype(object)
    for col in out.columns:
        if col in PERCENT_COLUMNS:
            out[col] = [percent(v) for v in table[col]]
        elif col not in ("benchmark", "kind", "metric", "setting"):
            out[col] = [readable(_int(v)) for v in table[col]]
    if {"ci_low", "ci_high"} <= set(table.columns):
        out.insert(list(out.columns).index("value") + 1 if "value" in out.columns else len(out.columns), "95% CI",
                   [interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)])
    return out


def _int(value: Any) -> Any:
    """Whole floats (counts that went through a float column) as ints; anything else unchanged."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value
