"""Shift statistics between two sets of samples: how far set B lies from set A, with an interval and a test.

Convention used everywhere: **A is the reference** (typically the target model's own generations, or the refined
set) and **B is the set under test** (typically the external safety SFT data). A positive ΔNLL therefore means
"B is less likely under the model than A".

Three families, named in every result so the UI can say which is which:

- ``likelihood``: per-sample NLL of the response under the target model (``mean_delta_nll``, ``perplexity_ratio``);
- ``embedding``: two-sample statistics on sentence embeddings (``mmd_rbf``, ``energy_distance``,
  ``classifier_auc``, ``centroid_distance``, ``centroid_cosine_distance``);
- ``output``: paired similarity of each dataset answer to the model's own answer (``output_similarity``).

Every function returns a `ShiftStat` with a bootstrap 95% percentile interval and, where a test makes sense, a
p-value. All randomness (subsampling, permutations, bootstrap) comes from one ``numpy.random.Generator`` seeded
by ``seed`` and is drawn in a fixed order, so results are reproducible given the seed. Bootstrap resamples are
drawn as multinomial count vectors, so a resample never materializes copies of the data and most statistics are
one matrix product per batch of resamples.

How to read the intervals: for MMD² and energy distance the bootstrap interval is conservative near 0 (the
bootstrap of a degenerate U-statistic spreads wider than the statistic does; about 1.7x in our simulations), so use
the permutation p-value to decide *whether* there is a shift and the interval for *how large* it is. Centroid
distances are norms, never below 0, so their intervals exclude 0 even without a shift: read their p-value.

Inputs need at least 2 samples per set (else `ShiftInputError`, a ``ValueError``); with 2–4 samples everything
still runs, the intervals are just wide (and may be NaN when every resample is degenerate).

The package: `base` (ShiftStat, checks, resampling), `likelihood`, `kernel` (MMD², energy), `embedding`
(classifier AUC, centroids), `output` (paired similarity), `table` (`compare_sets`, `shift_table`).

Example::

    from dgr_core.shift.stats import compare_sets, shift_table
    print(shift_table(compare_sets(nll_model, nll_dataset, emb_model, emb_dataset, seed=0)))
"""

from __future__ import annotations

from dgr_core.shift.stats.base import CI_LEVEL, MIN_SAMPLES, ShiftInputError, ShiftStat
from dgr_core.shift.stats.embedding import centroid_cosine_distance, centroid_distance, classifier_auc
from dgr_core.shift.stats.kernel import energy_distance, mmd_rbf
from dgr_core.shift.stats.likelihood import mean_delta_nll, perplexity_ratio
from dgr_core.shift.stats.output import output_similarity
from dgr_core.shift.stats.table import TABLE_COLUMNS, compare_sets, shift_table

__all__ = [
    "CI_LEVEL", "MIN_SAMPLES", "ShiftInputError", "ShiftStat", "centroid_cosine_distance", "centroid_distance",
    "classifier_auc", "energy_distance", "mmd_rbf", "mean_delta_nll", "perplexity_ratio", "output_similarity",
    "TABLE_COLUMNS", "compare_sets", "shift_table",
]
