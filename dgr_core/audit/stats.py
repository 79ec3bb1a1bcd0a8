"""Numbers about pattern tags: rates with Wilson intervals, agreement between two judges (Cohen's kappa),
precision / recall against hand labels, which patterns a refinement removed or introduced, and row filters.

Every function takes tag tables as `dgr_core.audit.engine.tag_table` writes them (id, status, the pattern
columns as nullable 0/1); rows with status "unparsable" count in no rate and no agreement (their number is
reported beside).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from dgr_core.audit.patterns import LABELS, OVERTHINKING_PARTS, PATTERNS
from dgr_core.errors import DataError

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaN, NaN when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the bound is exactly 0 (1); rounding would leave 1e-17 above it.
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def _ok(tags: pd.DataFrame) -> pd.DataFrame:
    """The parsed rows, with `overthinking` derived from its three parts when a table lacks it."""
    ok = tags[tags["status"] == "ok"]
    if "overthinking" not in ok:
        ok = ok.assign(overthinking=ok[list(OVERTHINKING_PARTS)].fillna(0).astype(int).max(axis=1))
    return ok


def pattern_rates(tags: pd.DataFrame, patterns: tuple[str, ...] = (*PATTERNS, "overthinking")) -> pd.DataFrame:
    """One row per pattern: n (parsed samples), k (tagged), rate, Wilson 95% ci_low / ci_high, n_unparsable."""
    ok = _ok(tags)
    rows = []
    for p in patterns:
        n, k = len(ok), int(ok[p].fillna(0).astype(int).sum())
        lo, hi = wilson(k, n)
        rows.append({"pattern": p, "label": LABELS[p], "n": n, "k": k, "rate": k / n if n else math.nan,
                     "ci_low": lo, "ci_high": hi, "n_unparsable": len(tags) - n})
    return pd.DataFrame(rows)


def cohen_kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa of two 0/1 series of one length; 1.0 when both are constant and equal, NaN when the expected
    agreement is 1 but they differ (kappa is undefined there)."""
    a, b = a.astype(int).to_numpy(), b.astype(int).to_numpy()
    if len(a) == 0:
        return math.nan
    po = float((a == b).mean())
    pa, pb = a.mean(), b.mean()
    pe = float(pa * pb + (1 - pa) * (1 - pb))
    if pe >= 1.0:
        return 1.0 if po == 1.0 else math.nan
    return (po - pe) / (1 - pe)


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per pattern, over the ids both judges parsed: n, agreement (share equal), Cohen's kappa, both rates."""
    both = _ok(a).merge(_ok(b), on="id", suffixes=("_a", "_b"))
    rows = []
    for p in (*PATTERNS, "overthinking"):
        x, y = both[f"{p}_a"].astype(int), both[f"{p}_b"].astype(int)
        rows.append({"pattern": p, "label": LABELS[p], "n": len(both),
                     "agreement": float((x == y).mean()) if len(both) else math.nan,
                     "kappa": cohen_kappa(x, y), "rate_a": float(x.mean()) if len(both) else math.nan,
                     "rate_b": float(y.mean()) if len(both) else math.nan})
    return pd.DataFrame(rows)


def precision_recall(pred: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    """Per pattern: tp, fp, fn, precision, recall against `gold` (id + pattern columns), over the ids of `gold`."""
    both = gold.merge(_ok(pred), on="id", suffixes=("_gold", "_pred"))
    if len(both) < len(gold):
        raise DataError(f"{len(gold) - len(both)} labelled id(s) have no parsed prediction.")
    rows = []
    for p in PATTERNS:
        g, q = both[f"{p}_gold"].astype(int), both[f"{p}_pred"].astype(int)
        tp, fp, fn = int(((g == 1) & (q == 1)).sum()), int(((g == 0) & (q == 1)).sum()), int(((g == 1) & (q == 0)).sum())
        rows.append({"pattern": p, "n": len(both), "positives": int(g.sum()), "tp": tp, "fp": fp, "fn": fn,
                     "precision": tp / (tp + fp) if tp + fp else math.nan,
                     "recall": tp / (tp + fn) if tp + fn else math.nan})
    return pd.DataFrame(rows)


def pattern_changes(original: pd.DataFrame, refined: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair (`pairs`: columns original_id, refined_id, e.g. a refined row and its parent): per pattern
    "removed" (1 -> 0), "introduced" (0 -> 1), "kept" (1 -> 1) or "" (0 -> 0). Pairs with a side unparsable or
    untagged are left out."""
    a = _ok(original).assign(original_id=lambda t: t["id"].astype(str))
    b = _ok(refined).assign(refined_id=lambda t: t["id"].astype(str))
    ids = pairs[["original_id", "refined_id"]].astype(str)
    both = ids.merge(a, on="original_id").merge(b, on="refined_id", suffixes=("_original", "_refined"))
    out = both[["original_id", "refined_id"]].copy()
    for p in PATTERNS:
        before, after = both[f"{p}_original"].astype(int), both[f"{p}_refined"].astype(int)
        out[p] = [_change(x, y) for x, y in zip(before, after, strict=True)]
    return out.reset_index(drop=True)


def _change(before: int, after: int) -> str:
    return {(1, 0): "removed", (0, 1): "introduced", (1, 1): "kept"}.get((before, after), "")


def change_summary(changes: pd.DataFrame) -> pd.DataFrame:
    """Per pattern: how many pairs had it removed, introduced, kept (from `pattern_changes`)."""
    rows = [{"pattern": p, "label": LABELS[p], **{c: int((changes[p] == c).sum())
                                                  for c in ("removed", "introduced", "kept")}, "pairs": len(changes)}
            for p in PATTERNS]
    return pd.DataFrame(rows)


def with_tags(table: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """`table` with the pattern columns (and `audit_status`) of `tags` joined on id; rows without tags get NA."""
    by_id = tags.set_index(tags["id"].astype(str))
    ids = table["id"].astype(str)
    out = table.copy()
    out["audit_status"] = ids.map(by_id["status"])
    for p in PATTERNS:
        out[p] = ids.map(by_id[p]).astype("Int8")
    return out


def filter_patterns(table: pd.DataFrame, *, having: Sequence[str] = (), lacking: Sequence[str] = ()) -> pd.DataFrame:
    """Rows tagged with every pattern in `having` and with none in `lacking` (untagged rows fail `having` and pass
    `lacking`)."""
    mask = pd.Series(True, index=table.index)
    for p in having:
        mask &= table[p].fillna(0).astype(int) == 1
    for p in lacking:
        mask &= table[p].fillna(0).astype(int) == 0
    return table[mask]


def ids_with_patterns(tags: pd.DataFrame, patterns: list[str]) -> set[str]:
    """Ids tagged with any of `patterns` (parsed rows only)."""
    ok = _ok(tags)
    mask = pd.Series(False, index=ok.index)
    for p in patterns:
        mask |= ok[p].fillna(0).astype(int) == 1
    return set(ok.loc[mask, "id"].astype(str))
