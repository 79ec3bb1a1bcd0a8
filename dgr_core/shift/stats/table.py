"""All statistics of two sets at once (`compare_sets`) and their table (`shift_table`), as the Shift page shows them.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from dgr_core.shift.stats.base import ShiftStat
from dgr_core.shift.stats.embedding import centroid_cosine_distance, centroid_distance, classifier_auc
from dgr_core.shift.stats.kernel import energy_distance, mmd_rbf
from dgr_core.shift.stats.likelihood import mean_delta_nll, perplexity_ratio
from dgr_core.shift.stats.output import output_similarity

TABLE_COLUMNS = {
    "name": "Statistic", "family": "Family", "value": "Value", "ci_low": "95% CI low", "ci_high": "95% CI high",
    "effect_size": "Effect size", "effect_size_name": "Effect measure", "p_value": "p-value",
    "n_a": "n A", "n_b": "n B", "description": "What it measures", "note": "Note",
}


def shift_table(stats: list[ShiftStat]) -> pd.DataFrame:
    """One row per statistic with readable column names (see TABLE_COLUMNS), indexed by the stable key."""
    rows = [asdict(s) for s in stats]
    df = pd.DataFrame(rows, columns=["key", *TABLE_COLUMNS])
    return df.set_index("key").rename(columns=TABLE_COLUMNS)


def compare_sets(
    nll_a: np.ndarray | None,
    nll_b: np.ndarray | None,
    emb_a: np.ndarray | None,
    emb_b: np.ndarray | None,
    *,
    seed: int = 0,
    n_boot: int = 200,
    emb_dataset_answers: np.ndarray | None = None,
    emb_model_answers: np.ndarray | None = None,
) -> list[ShiftStat]:
    """Run the whole family on what is available: likelihood stats when both NLL arrays are given, embedding
    stats when both embedding arrays are given, output similarity when both paired answer embeddings are given."""
    out: list[ShiftStat] = []
    if nll_a is not None and nll_b is not None:
        out += [f(nll_a, nll_b, seed=seed, n_boot=n_boot) for f in (mean_delta_nll, perplexity_ratio)]
    if emb_a is not None and emb_b is not None:
        embedding_stats = (mmd_rbf, energy_distance, classifier_auc, centroid_distance, centroid_cosine_distance)
        out += [f(emb_a, emb_b, seed=seed, n_boot=n_boot) for f in embedding_stats]
    if emb_dataset_answers is not None and emb_model_answers is not None:
        out.append(output_similarity(emb_dataset_answers, emb_model_answers, seed=seed, n_boot=n_boot))
    return out
