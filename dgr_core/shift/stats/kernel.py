"""Kernel two-sample statistics on embeddings: MMD² with an RBF kernel (median heuristic) and the energy distance,
each with a permutation p-value and a bootstrap interval (conservative near 0: read the p-value for *whether*).
"""

from __future__ import annotations

import math

import numpy as np

from dgr_core.shift.stats.base import (
    ShiftStat,
    as_samples,
    boot_counts,
    percentile_ci,
    perm_indicators,
    perm_p,
    same_width,
    subsample,
    subsample_note,
)


def _sq_dists(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances via one matrix product (BLAS), clipped at 0, exact zero diagonal."""
    norms = np.einsum("ij,ij->i", z, z)
    sq = z @ z.T
    sq *= -2.0
    sq += norms[:, None]
    sq += norms[None, :]
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, 0.0)
    return sq


def _u_stats(k0: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Unbiased two-sample statistic E k(x,x') + E k(y,y') - 2 E k(x,y) for each weight column.

    k0 is the pooled kernel matrix with a zero diagonal; wx, wy are (N, R) sample weights (0/1 indicators for the
    observed split and permutations, multinomial counts for bootstrap resamples). Only pairs of *distinct original*
    samples enter the within-set means, so bootstrap duplicates do not add the k(x, x) self-similarity that would
    otherwise bias a resampled U-statistic upward.
    """
    kx, ky = k0 @ wx, k0 @ wy
    xx, yy, xy = (wx * kx).sum(0), (wy * ky).sum(0), (wx * ky).sum(0)
    sx, sy = wx.sum(0), wy.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return xx / (sx**2 - (wx**2).sum(0)) + yy / (sy**2 - (wy**2).sum(0)) - 2.0 * xy / (sx * sy)


def _kernel_test(
    k0: np.ndarray, m: int, n: int, rng: np.random.Generator, n_perm: int, n_boot: int
) -> tuple[float, float, float, float | None]:
    """Observed statistic, bootstrap percentile CI and permutation p-value for the pooled kernel k0 ([A; B])."""
    ind = np.r_[np.ones(m), np.zeros(n)][:, None]
    value = float(_u_stats(k0, ind, 1.0 - ind)[0])
    p = None
    if n_perm > 0:
        perm = perm_indicators(rng, m, n, n_perm).T
        p = perm_p(value, _u_stats(k0, perm, 1.0 - perm))
    cx = np.r_[boot_counts(rng, m, n_boot).T, np.zeros((n, n_boot))]
    cy = np.r_[np.zeros((m, n_boot)), boot_counts(rng, n, n_boot).T]
    lo, hi = percentile_ci(_u_stats(k0, cx, cy))
    return value, lo, hi, p


def prepare_pair(
    X: np.ndarray, Y: np.ndarray, max_n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    x, y = as_samples(X, "A"), as_samples(Y, "B")
    same_width(x, y)
    xs, ys = subsample(x, max_n, rng), subsample(y, max_n, rng)
    return xs, ys, subsample_note(x.shape[0], y.shape[0], xs, ys)


def mmd_rbf(
    X: np.ndarray, Y: np.ndarray, *, seed: int = 0, n_boot: int = 200, n_perm: int = 200, max_n: int = 2000
) -> ShiftStat:
    """Unbiased squared MMD with an RBF kernel, permutation p-value and bootstrap CI.

    Bandwidth by the median heuristic on the pooled (subsampled) sample: k(x, y) = exp(-‖x-y‖² / (2σ²)) with σ²
    the median pairwise squared distance. Cost is O(N²) memory for N = n_a + n_b <= 2·max_n.
    """
    rng = np.random.default_rng(seed)
    x, y, note = prepare_pair(X, Y, max_n, rng)
    sq = _sq_dists(np.vstack([x, y]))
    sigma2 = float(np.median(sq[np.triu_indices_from(sq, k=1)]))
    if sigma2 <= 0:  # more than half the pairs coincide: any positive scale gives a usable kernel
        sigma2 = float(sq.max()) or 1.0
    # In place: at max_n = 2000 per set each N x N float64 matrix is 128 MB.
    sq *= -0.5 / sigma2
    k0 = np.exp(sq, out=sq)
    np.fill_diagonal(k0, 0.0)
    value, lo, hi, p = _kernel_test(k0, x.shape[0], y.shape[0], rng, n_perm, n_boot)
    return ShiftStat(
        key="mmd_rbf", name="MMD² (RBF)", family="embedding",
        value=value, ci_low=lo, ci_high=hi,
        # MMD itself: the RKHS distance between the two kernel mean embeddings, 0 to √2 for an RBF kernel,
        # so it reads on one scale whatever the embedding's units (a negative unbiased MMD² counts as 0).
        effect_size=math.sqrt(max(value, 0.0)), effect_size_name="MMD = √max(MMD², 0) (0 to √2)", p_value=p,
        n_a=x.shape[0], n_b=y.shape[0],
        description="Kernel distance between the two embedding distributions (≈0 = same distribution, "
        "can dip below 0 by noise; larger = more shifted; the p-value tests 'same distribution').",
        note="; ".join(s for s in (note, f"median-heuristic σ = {math.sqrt(sigma2):.4g}") if s),
    )


def energy_distance(
    X: np.ndarray, Y: np.ndarray, *, seed: int = 0, n_boot: int = 200, n_perm: int = 200, max_n: int = 2000
) -> ShiftStat:
    """Multivariate energy distance 2E‖X-Y‖ - E‖X-X'‖ - E‖Y-Y'‖ (unbiased U-statistic form).

    scipy's ``scipy.stats.energy_distance`` is 1-D only (and reports the square root of the biased V-statistic),
    so the multivariate form is computed here from pairwise distances. The effect size is the homogeneity
    coefficient E / (2E‖X-Y‖), in [0, 1] up to noise, which does not depend on the scale of the embeddings.
    """
    rng = np.random.default_rng(seed)
    x, y, note = prepare_pair(X, Y, max_n, rng)
    dist = np.sqrt(_sq_dists(np.vstack([x, y])))
    m = x.shape[0]
    cross = float(dist[:m, m:].mean())
    # Energy distance is the MMD of the kernel -‖x - y‖; negate in place to spare a second N x N matrix.
    value, lo, hi, p = _kernel_test(np.negative(dist, out=dist), m, y.shape[0], rng, n_perm, n_boot)
    return ShiftStat(
        key="energy_distance", name="Energy distance", family="embedding",
        value=value, ci_low=lo, ci_high=hi,
        effect_size=value / (2 * cross) if cross > 0 else float("nan"),
        effect_size_name="homogeneity coefficient E/(2E‖X−Y‖)", p_value=p,
        n_a=m, n_b=y.shape[0],
        description="Distance between embedding distributions in embedding units (≈0 = same distribution; "
        "effect size 0–1 is scale-free; the p-value tests 'same distribution').",
        note=note,
    )
