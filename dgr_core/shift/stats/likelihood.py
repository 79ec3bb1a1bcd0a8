"""Likelihood statistics: per-sample NLL of the responses under the target model, set B against set A.

    mean_delta_nll(nll_a, nll_b)      # ΔNLL = mean(B) - mean(A), bootstrap CI, Welch p, Cohen's d
    perplexity_ratio(nll_a, nll_b)    # exp(ΔNLL)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps

from dgr_core.shift.stats.base import ShiftStat, as_values, boot_counts, percentile_ci


def _delta_mean_boot(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap distribution of mean(B) - mean(A), resampling each set independently."""
    mean_a = boot_counts(rng, a.size, n_boot) @ a / a.size
    mean_b = boot_counts(rng, b.size, n_boot) @ b / b.size
    return mean_b - mean_a


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean B - mean A) / pooled SD; NaN when both sets are constant and differ, 0 when identical constants."""
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    diff = b.mean() - a.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float("nan")
    return float(diff / math.sqrt(pooled))


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    # Near-constant sets (e.g. one fixed refusal repeated) make scipy warn about precision; the p-value is
    # still the right one (or NaN when both sets are constant), so the warning only adds noise to a page.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(sps.ttest_ind(b, a, equal_var=False).pvalue)


def mean_delta_nll(nll_a: np.ndarray, nll_b: np.ndarray, *, seed: int = 0, n_boot: int = 200) -> ShiftStat:
    """Mean per-sample NLL of B minus that of A, with bootstrap CI, Cohen's d and a Welch t-test p-value."""
    a, b = as_values(nll_a, "NLL of A"), as_values(nll_b, "NLL of B")
    lo, hi = percentile_ci(_delta_mean_boot(a, b, np.random.default_rng(seed), n_boot))
    return ShiftStat(
        key="mean_delta_nll", name="Mean ΔNLL (B − A)", family="likelihood",
        value=float(b.mean() - a.mean()), ci_low=lo, ci_high=hi,
        effect_size=_cohens_d(a, b), effect_size_name="Cohen's d", p_value=_welch_p(a, b),
        n_a=a.size, n_b=b.size,
        description="How much less likely the target model finds B than A, in the units of the NLL given "
        "(nats per token for mean per-token NLL; 0 = equally likely; > 0 = B is off the model's distribution).",
    )


def perplexity_ratio(nll_a: np.ndarray, nll_b: np.ndarray, *, seed: int = 0, n_boot: int = 200) -> ShiftStat:
    """exp(mean NLL B - mean NLL A) with CI; the same resamples as `mean_delta_nll` for the same seed.

    With per-sample NLL given as mean per-token NLL in nats, this is the ratio of geometric-mean perplexities.
    The p-value is the Welch test of `mean_delta_nll` (ratio = 1 exactly when ΔNLL = 0).
    """
    a, b = as_values(nll_a, "NLL of A"), as_values(nll_b, "NLL of B")
    lo, hi = percentile_ci(np.exp(_delta_mean_boot(a, b, np.random.default_rng(seed), n_boot)))
    return ShiftStat(
        key="perplexity_ratio", name="Perplexity ratio (B / A)", family="likelihood",
        value=float(np.exp(b.mean() - a.mean())), ci_low=lo, ci_high=hi,
        effect_size=_cohens_d(a, b), effect_size_name="Cohen's d (of NLL)", p_value=_welch_p(a, b),
        n_a=a.size, n_b=b.size,
        description="How many times more perplexed the target model is by B than by A "
        "(1 = same; 2 = twice as surprised per token, if NLL is per-token mean in nats).",
    )
