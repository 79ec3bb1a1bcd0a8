"""Paired statistics for two runs graded on the same items (e.g. vanilla SFT vs DGR-refined SFT on MATH-500).

Two runs on the same items are paired: item difficulty cancels, so a paired test is much more sensitive than
comparing two accuracies with their separate intervals.

- `mcnemar(a, b)`: exact McNemar test. Only discordant items carry information: `b01` items where run a is wrong
  and run b right, `b10` the reverse. Under "no difference" each discordant item goes either way with probability
  1/2, so the p-value is a two-sided exact binomial test of b01 among b01 + b10.
- `paired_bootstrap(a, b)`: resamples items (the pair stays together), giving a percentile CI of
  mean(b) - mean(a) and a two-sided p-value from the bootstrap distribution shifted to the null. Works for any
  per-item score (0/1 or continuous), not only correctness.
- `accuracy_with_ci(x)`: a single run's accuracy with a Wilson score interval (good at small n and near 0 or 1,
  where the normal interval leaves [0, 1]).

- `cluster_bootstrap_ci(groups)`: the accuracy of items answered k times (k samples or several seeds), with an
  interval that resamples items, not samples; `pass_at_k(n, c, k)`: the unbiased pass@k estimator.

Every item counts: a truncated or malformed answer is a wrong answer (score 0), never dropped, in both runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dgr_core.errors import DGRError


@dataclass(frozen=True)
class PairedResult:
    """Outcome of a paired comparison of run a (baseline) and run b. `delta` = mean(b) - mean(a)."""

    method: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    p_value: float
    b01: int | None = None  # items a got wrong and b right (binary scores only)
    b10: int | None = None  # items a got right and b wrong
    ci_low: float | None = None  # confidence interval of delta, where the method gives one
    ci_high: float | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_scores(x: ArrayLike, name: str) -> np.ndarray:
    """A 1-D finite float array, or a DGRError naming the argument."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DGRError(f"{name} must be a 1-D sequence of per-item scores; got shape {arr.shape}")
    if arr.size == 0:
        raise DGRError(f"{name} is empty: nothing to compare")
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise DGRError(f"{name} must hold numbers or booleans; got {arr.dtype}") from exc
    if not np.all(np.isfinite(arr)):
        raise DGRError(f"{name} holds NaN or infinite values: drop or grade those items first")
    return arr


def _as_binary(x: ArrayLike, name: str) -> np.ndarray:
    arr = _as_scores(x, name)
    if not np.all((arr == 0) | (arr == 1)):
        raise DGRError(f"{name} must be correct/incorrect (booleans or 0/1) for this test")
    return arr.astype(bool)


def _pair(a: ArrayLike, b: ArrayLike, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    convert = _as_binary if binary else _as_scores
    xa, xb = convert(a, "a"), convert(b, "b")
    if xa.shape != xb.shape:
        raise DGRError(f"paired runs must score the same items: a has {xa.size} items, b has {xb.size}")
    return xa, xb


def mcnemar(a: ArrayLike, b: ArrayLike) -> PairedResult:
    """Exact McNemar test of two binary runs on the same items."""
    xa, xb = _pair(a, b, binary=True)
    b01 = int(np.sum(~xa & xb))
    b10 = int(np.sum(xa & ~xb))
    discordant = b01 + b10
    # No discordant pair: the runs agree on every item, and there is no evidence of any difference.
    p = 1.0 if discordant == 0 else float(stats.binomtest(b01, discordant, 0.5).pvalue)
    return PairedResult(
        method="mcnemar-exact", n=int(xa.size), mean_a=float(xa.mean()), mean_b=float(xb.mean()),
        delta=float(xb.mean() - xa.mean()), p_value=min(p, 1.0), b01=b01, b10=b10,
    )


def _bootstrap_means(diff: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples of `diff`, drawn in chunks so memory stays near 8 MB at any n."""
    chunk = max(1, 1_000_000 // diff.size)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, diff.size, size=(stop - start, diff.size))
        out[start:stop] = diff[idx].mean(axis=1)
    return out


def paired_bootstrap(
    a: ArrayLike, b: ArrayLike, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> PairedResult:
    """Paired bootstrap of mean(b) - mean(a): percentile CI and two-sided p-value.

    The p-value counts resampled deltas at least as far from the observed delta as the observed delta is from 0
    (the bootstrap distribution shifted to the null), with the +1 correction so it is never exactly 0.
    """
    if n_boot < 100:
        raise DGRError(f"n_boot must be at least 100 for a usable interval; got {n_boot}")
    if not 0 < confidence < 1:
        raise DGRError(f"confidence must lie in (0, 1); got {confidence}")
    xa, xb = _pair(a, b, binary=False)
    diff = xb - xa
    delta = float(diff.mean())
    boots = _bootstrap_means(diff, n_boot, np.random.default_rng(seed))
    # Tolerance: a resample of identical differences can differ from `delta` by float rounding only.
    extreme = np.abs(boots - delta) >= abs(delta) - 1e-12
    p = (int(extreme.sum()) + 1) / (n_boot + 1)
    alpha = 1 - confidence
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return PairedResult(
        method="paired-bootstrap", n=int(xa.size), mean_a=float(xa.mean()), mean_b=float(xb.mean()),
        delta=delta, p_value=min(p, 1.0), ci_low=float(lo), ci_high=float(hi), confidence=confidence,
    )


def accuracy_with_ci(x: ArrayLike, seed: int | None = None, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """(accuracy, low, high) with a Wilson score interval.

    `seed` is accepted for a uniform signature with the bootstrap functions and is unused: the Wilson interval is
    closed-form, so the result is the same for every seed.
    """
    del seed
    if not 0 < confidence < 1:
        raise DGRError(f"confidence must lie in (0, 1); got {confidence}")
    arr = _as_binary(x, "x")
    lo, hi = wilson_interval(float(arr.mean()), arr.size, confidence=confidence)
    return float(arr.mean()), lo, hi


def wilson_interval(p: float, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion p observed over n units."""
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 the Wilson bound is exactly 0 or 1; pin it so float rounding does not leave 5e-17.
    lo = 0.0 if p == 0.0 else max(0.0, center - half)
    hi = 1.0 if p == 1.0 else min(1.0, center + half)
    return lo, hi


def cluster_bootstrap_ci(groups: Sequence[ArrayLike], *, n_boot: int = 2000, seed: int = 0,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the per-sample scores of items that were each answered several times (k samples or
    several seeds): items are resampled with replacement, each bringing all its samples, so the interval counts
    the items, not the samples (k samples of one item are not k independent observations). The mean is the mean
    over items of the per-item mean (equal to the sample mean when every item has k samples). The interval is the
    percentile interval, widened where needed to the Wilson interval over the items (a bootstrap of identical
    items has no width)."""
    if not groups:
        raise DGRError("cluster bootstrap of no items")
    if not 0 < confidence < 1:
        raise DGRError(f"confidence must lie in (0, 1); got {confidence}")
    means = np.array([_as_scores(g, "item scores").mean() for g in groups])
    boots = _bootstrap_means(means, n_boot, np.random.default_rng(seed))
    alpha = 1 - confidence
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    # A bootstrap collapses to a point when every item scores the same (0 of 6 refused: [0, 0]); never report
    # less uncertainty than the Wilson interval over the items themselves.
    w_lo, w_hi = wilson_interval(float(means.mean()), means.size, confidence=confidence)
    return float(means.mean()), float(min(lo, w_lo)), float(max(hi, w_hi))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. (2021): the chance that at least one of k samples drawn from
    the n generated ones (c of them correct) is correct."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise DGRError(f"pass@k needs 0 < k <= n and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
