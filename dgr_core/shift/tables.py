"""Distributions, rankings and category breakdowns of scored sets: the Shift page's tables."""

from __future__ import annotations

import pandas as pd

from dgr_core.shift.scores import SEGMENTS, ScoredSet


def nll_long(sets: dict[str, ScoredSet]) -> pd.DataFrame:
    """Long table for distribution plots: dataset, id, category, segment, nll (rows without that segment dropped)."""
    parts = []
    for name, s in sets.items():
        for seg in SEGMENTS:
            part = pd.DataFrame({"dataset": name, "id": s.frame["id"], "category": s.frame.get("category", ""),
                                 "segment": seg, "nll": s.frame[f"nll_{seg}"].to_numpy()})
            parts.append(part.dropna(subset=["nll"]))
    cols = ["dataset", "id", "category", "segment", "nll"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def nll_summary(sets: dict[str, ScoredSet]) -> pd.DataFrame:
    """Per dataset and segment: samples with that segment, mean, median and 90th percentile of per-sample NLL."""
    long = nll_long(sets)
    if long.empty:
        return pd.DataFrame()
    g = long.groupby(["dataset", "segment"], sort=False)["nll"]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "median": g.median(), "p90": g.quantile(0.9)})
    return out.reset_index()


def top_ood(sets: dict[str, ScoredSet], segment: str = "total", n: int = 20) -> pd.DataFrame:
    """The n samples with the highest NLL over all sets (most out of the model's distribution)."""
    col = f"nll_{segment}"
    parts = [s.frame.assign(dataset=name)[["dataset", "id", "category", col, f"n_tokens_{segment}", "prompt"]]
             for name, s in sets.items()]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).dropna(subset=[col]).nlargest(n, col).reset_index(drop=True)


def delta_vs_reference(ref: ScoredSet, test: ScoredSet, segment: str = "total") -> pd.DataFrame:
    """Per paired prompt (see `compare.pair_rows`), NLL of both and ΔNLL = test − reference, largest first."""
    from dgr_core.compare import pair_rows, pair_table

    pairs = pair_rows(ref.frame, test.frame)
    table = pair_table(pairs, ref.result.table, test.result.table)
    col = f"delta_nll_{segment}"
    out = table[["id_a", "id_b", "category", f"nll_{segment}_a", f"nll_{segment}_b", col, "prompt"]]
    out = out.rename(columns={"id_a": f"id ({ref.name})", "id_b": f"id ({test.name})"})
    out.attrs["paired_by"] = pairs.attrs.get("paired_by")
    return out.dropna(subset=[col]).sort_values(col, ascending=False).reset_index(drop=True)


def category_breakdown(sets: dict[str, ScoredSet], segment: str = "total") -> pd.DataFrame:
    """Mean NLL per category (rows) per dataset (columns), the shift of each dataset from the first (the
    reference) as `Δ <dataset>` = its mean minus the reference's in that category, and the sample count per cell
    as `n (<dataset>)`. A category missing from a dataset is NaN there."""
    col = f"nll_{segment}"
    frames = []
    for name, s in sets.items():
        f = s.frame[["category", col]].copy()
        f["category"] = f["category"].fillna("").replace("", "(none)")
        f["dataset"] = name
        frames.append(f)
    if not frames:
        return pd.DataFrame()
    long = pd.concat(frames, ignore_index=True).dropna(subset=[col])
    mean = long.pivot_table(index="category", columns="dataset", values=col, aggfunc="mean")
    count = long.pivot_table(index="category", columns="dataset", values=col, aggfunc="count")
    count.columns = [f"n ({c})" for c in count.columns]
    order = [n for n in sets if n in mean.columns]
    ref = next(iter(sets))
    out = mean[order]
    if ref in mean.columns:
        deltas = pd.DataFrame({f"Δ {n}": mean[n] - mean[ref] for n in order if n != ref}, index=mean.index)
        out = out.join(deltas)
    return out.join(count).sort_index()


def category_mean_columns(breakdown: pd.DataFrame) -> list[str]:
    """The per-dataset mean-NLL columns of a `category_breakdown` (not the Δ or count columns)."""
    return [c for c in breakdown.columns if not str(c).startswith(("n (", "Δ "))]
