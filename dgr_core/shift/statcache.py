"""Shift statistics of pairs of scored sets, cached on disk (`scores/shift/<key>.json`, one file per family:
likelihood per segment, embedding once), keyed by both sets' sample keys and the settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.scoring.cache import canonical_json, sha256
from dgr_core.shift.scores import ScoredSet, check_segment
from dgr_core.shift.stats import ShiftStat, compare_sets
from dgr_core.workspace import Workspace, atomic_write_json, read_json

STATS_VERSION = 2  # 2: effect sizes for MMD, centroid cosine and output similarity; families cached apart
FAMILY_LABELS = {"likelihood": "likelihood (NLL under the target model)",
                 "embedding": "embedding (hidden states of the target model)",
                 "output": "output (similarity to the model's own answer)"}




def _stats_path(ws: Workspace, parts: dict[str, Any]) -> Path:
    return ws.scores / "shift" / f"{sha256(canonical_json(parts))[:24]}.json"


def _cached_stats(ws: Workspace, parts: dict[str, Any], ref: ScoredSet, test: ScoredSet,
                  compute: Callable[[], list[ShiftStat]]) -> list[ShiftStat]:
    """Statistics stored under `parts` (plus both sets' sample keys), computed by `compute()` when absent."""
    parts = {**parts, "version": STATS_VERSION, "a": sha256("|".join(ref.result.keys)),
             "b": sha256("|".join(test.result.keys))}
    path = _stats_path(ws, parts)
    if path.is_file():
        return [ShiftStat.from_dict(d) for d in read_json(path)["stats"]]
    stats = compute()
    atomic_write_json(path, {**parts, "reference": ref.name, "test": test.name,
                             "stats": [s.to_dict() for s in stats]})
    return stats


def shift_stats(ws: Workspace, ref: ScoredSet, test: ScoredSet, *, segment: str = "total", seed: int = 0,
                n_boot: int = 200) -> list[ShiftStat]:
    """Likelihood + embedding statistics of `test` against `ref` (A = reference), cached by the sample keys.

    Samples with no tokens in `segment` (NaN NLL) are left out of the likelihood statistics. The two families
    are cached apart: the embedding statistics (the slow ones: O(n²) kernels, permutations, cross-validation)
    do not depend on the segment, so choosing another segment only computes the cheap likelihood ones.
    """
    def likelihood() -> list[ShiftStat]:
        nll_a, nll_b = ref.nll(segment), test.nll(segment)
        nll_a, nll_b = nll_a[np.isfinite(nll_a)], nll_b[np.isfinite(nll_b)]
        if nll_a.size < 2 or nll_b.size < 2:
            return []
        return compare_sets(nll_a, nll_b, None, None, seed=seed, n_boot=n_boot)

    def embedding() -> list[ShiftStat]:
        return compare_sets(None, None, ref.embeddings(), test.embeddings(), seed=seed, n_boot=n_boot)

    settings = {"seed": seed, "n_boot": n_boot}
    return (_cached_stats(ws, {"op": "shift_stats_likelihood", "segment": segment, **settings}, ref, test,
                          likelihood)
            + _cached_stats(ws, {"op": "shift_stats_embedding", **settings}, ref, test, embedding))


def comparison_pairs(names: list[str], all_pairs: bool = False) -> list[tuple[str, str]]:
    """(reference, test) pairs to compare: every dataset against the first one, or every pair in order."""
    if all_pairs:
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    return [(names[0], n) for n in names[1:]]


def pairwise_stats(ws: Workspace, sets: dict[str, ScoredSet], *, all_pairs: bool = False,
                   segment: str = "total", seed: int = 0, n_boot: int = 200) -> dict[str, list[ShiftStat]]:
    """`shift_stats` of each pair from `comparison_pairs`, labelled "<test> vs <reference>"."""
    return {f"{b} vs {a}": shift_stats(ws, sets[a], sets[b], segment=check_segment(segment), seed=seed,
                                       n_boot=n_boot)
            for a, b in comparison_pairs(list(sets), all_pairs)}


def shift_stats_frame(results: dict[str, list[ShiftStat]]) -> pd.DataFrame:
    """One table for the page: comparison, family, statistic, value, 95% CI, effect size, p-value, what it is.

    Rows are ordered likelihood, embedding, output within each comparison, so the size of the shift (ΔNLL) leads.
    """
    rows = []
    order = {"likelihood": 0, "embedding": 1, "output": 2}
    for label, stats in results.items():
        for s in sorted(stats, key=lambda s: order.get(s.family, 9)):
            rows.append({
                "comparison": label, "family": s.family, "statistic": s.name, "value": s.value,
                "95% CI": _fmt_ci(s.ci_low, s.ci_high),
                "effect size": s.effect_size, "effect measure": s.effect_size_name or "",
                "p-value": s.p_value, "n": f"{s.n_a} / {s.n_b}", "what it measures": s.description,
                "note": s.note, "key": s.key,
            })
    return pd.DataFrame(rows)


def _fmt_ci(lo: float, hi: float) -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    return f"[{lo:.4g}, {hi:.4g}]"


def headline(stats: list[ShiftStat]) -> dict[str, ShiftStat]:
    """The statistics to lead with, by key: mean ΔNLL and classifier AUC when present."""
    return {s.key: s for s in stats if s.key in ("mean_delta_nll", "perplexity_ratio", "classifier_auc")}
