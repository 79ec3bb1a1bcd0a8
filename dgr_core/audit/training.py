"""Risky patterns and training data: leave tagged rows out of a training subset (`exclude_tagged`, used by
`dgr_core.train.data.build_subset` for `SubsetConfig.exclude_patterns`), and the pattern rates of the rows a
training run used, for the Safety-tax table and the report (`run_pattern_rates`).

    run_pattern_rates(ws, [RunRows("run-1", "STAR-1", "original", ["68", "75"]), ...])
    -> one row per run: run, dataset, variant, judge, n (tagged training rows), untagged, and per pattern the rate
       with its Wilson 95% interval (as "rate [lo, hi]" percentages in `format_rates`)

The tags come from the dataset's saved audit (`dgr_core.audit.store`): a judge model's when one exists (its
name is in the `judge` column), else the heuristic's; a run whose dataset has no audit gets judge "" and NaN rates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pandas as pd

from dgr_core.audit.patterns import PATTERNS
from dgr_core.audit.stats import pattern_rates
from dgr_core.audit.store import AuditInfo, list_audits
from dgr_core.errors import DataError
from dgr_core.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRows:
    run_id: str
    dataset: str
    variant: str  # "original" or "refined"
    sample_ids: list[str] | None  # None = every row of the dataset


def preferred_audit(ws: Workspace, dataset: str) -> AuditInfo | None:
    """A judge model's audit if there is one (the first by name), else the heuristic's, else None."""
    audits = list_audits(ws, dataset)
    models = [a for a in audits if not a.is_heuristic]
    return (models or audits)[0] if (models or audits) else None


def exclude_tagged(ws: Workspace, dataset: str, df: pd.DataFrame, patterns: list[str], judge: str = "") -> pd.DataFrame:
    """`df` without the rows tagged with any of `patterns` by `judge`'s audit ("" = `preferred_audit`). Rows the
    judge could not parse, or that the audit does not cover, are kept (their tags are unknown) and logged."""
    from dgr_core.audit.stats import ids_with_patterns
    from dgr_core.audit.store import get_audit

    info = get_audit(ws, dataset, judge) if judge else preferred_audit(ws, dataset)
    if info is None:
        raise DataError(f"excluding risky patterns needs an audit of {dataset!r}: run `dgr audit --dataset "
                        f"{dataset}` (or the Audit tab of the Datasets page).")
    tags = info.tags()
    drop = ids_with_patterns(tags, patterns)
    known = set(tags.loc[tags["status"] == "ok", "id"].astype(str))
    ids = df["id"].astype(str)
    unknown = int((~ids.isin(known)).sum())
    if unknown:
        log.warning("%d row(s) of %s have no %s tags and are kept", unknown, dataset, info.judge)
    kept = df[~ids.isin(drop)].reset_index(drop=True)
    log.info("Excluded %d of %d rows tagged %s by %s", len(df) - len(kept), len(df), ", ".join(patterns), info.judge)
    return kept


def run_pattern_rates(ws: Workspace, runs: list[RunRows]) -> pd.DataFrame:
    rows, cache = [], {}
    for run in runs:
        if run.dataset not in cache:
            info = preferred_audit(ws, run.dataset)
            cache[run.dataset] = (info, info.tags() if info else None)
        info, tags = cache[run.dataset]
        rows.append({"run": run.run_id, "dataset": run.dataset, "variant": run.variant,
                     **_rates(info, tags, run.sample_ids)})
    return pd.DataFrame(rows)


def _rates(info: AuditInfo | None, tags: pd.DataFrame | None, ids: list[str] | None) -> dict:
    if tags is None or info is None:
        return {"judge": "", "n": 0, "untagged": len(ids or []),
                **{c: math.nan for p in PATTERNS for c in (p, f"{p}_lo", f"{p}_hi")}}
    if ids is not None:
        wanted = {str(i) for i in ids}
        mine = tags[tags["id"].astype(str).isin(wanted)]
        untagged = len(wanted) - int((mine["status"] == "ok").sum())
    else:
        mine, untagged = tags, int((tags["status"] != "ok").sum())
    table = pattern_rates(mine, PATTERNS).set_index("pattern")
    out = {"judge": info.judge, "n": int(table["n"].iloc[0]), "untagged": untagged}
    for p in PATTERNS:
        out.update({p: table.loc[p, "rate"], f"{p}_lo": table.loc[p, "ci_low"], f"{p}_hi": table.loc[p, "ci_high"]})
    return out


def format_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Printable: one "rate% [lo, hi]" column per pattern beside run, dataset, variant, judge, n."""
    out = table[["run", "dataset", "variant", "judge", "n", "untagged"]].copy()
    for p in PATTERNS:
        out[p.replace("_", " ")] = [_cell(r[p], r[f"{p}_lo"], r[f"{p}_hi"]) for r in table.to_dict("records")]
    return out


def _cell(rate: float, lo: float, hi: float) -> str:
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "–"
    return f"{100 * rate:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"
