"""The line and correlations of the shift-vs-tax scatter.

    fit = fit_line(frame["x"], frame["y"])       # slope, intercept, Pearson / Spearman with bootstrap 95% CIs
    fit.ok, fit.summary()                        # False and a note with fewer than MIN_FIT_POINTS runs

Least squares (numpy.polyfit) for the line, scipy for the correlations and their p-values; the intervals resample
runs (x, y pairs) with replacement from a seeded generator, vectorised over resamples (Spearman = Pearson on the
ranks of each resample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

MIN_FIT_POINTS = 3


@dataclass(frozen=True)
class Fit:
    """A least-squares line y = slope·x + intercept with Pearson and Spearman correlations.

    Intervals are bootstrap 95% percentile intervals over runs (pairs resampled with replacement, seeded);
    resamples where x or y is constant have no correlation and are left out. NaN everywhere when n < 3."""

    n: int
    slope: float = float("nan")
    intercept: float = float("nan")
    pearson: float = float("nan")
    pearson_ci: tuple[float, float] = (float("nan"), float("nan"))
    pearson_p: float = float("nan")
    spearman: float = float("nan")
    spearman_ci: tuple[float, float] = (float("nan"), float("nan"))
    spearman_p: float = float("nan")
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.n >= MIN_FIT_POINTS and math.isfinite(self.slope)

    def summary(self) -> str:
        """One line for a caption or a figure annotation."""
        if not self.ok:
            return self.note
        return (f"n = {self.n} · Pearson r = {self.pearson:.2f} [{_fmt(self.pearson_ci[0])}, "
                f"{_fmt(self.pearson_ci[1])}] · Spearman ρ = {self.spearman:.2f} [{_fmt(self.spearman_ci[0])}, "
                f"{_fmt(self.spearman_ci[1])}] · slope {self.slope:.3g}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.2f}"


def fit_line(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_boot: int = 2000) -> Fit:
    """Fit a line and correlate (see `Fit`)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)
    if n < MIN_FIT_POINTS:
        return Fit(n, note=f"{n} run(s) with both values: a fit needs at least {MIN_FIT_POINTS}.")
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return Fit(n, note="x or y is the same for every run: no line or correlation can be fitted.")
    slope, intercept = np.polyfit(xa, ya, 1)
    pr, pp = sps.pearsonr(xa, ya)
    sr, sp = sps.spearmanr(xa, ya)
    p_ci, s_ci = _boot_corr(xa, ya, np.random.default_rng(seed), n_boot)
    note = "few runs: the intervals are wide and rough" if n < 8 else ""
    return Fit(n, float(slope), float(intercept), float(pr), p_ci, float(pp), float(sr), s_ci, float(sp), note)


def _boot_corr(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
               n_boot: int) -> tuple[tuple[float, float], tuple[float, float]]:
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    pear = _rowwise_corr(x[idx], y[idx])
    # Spearman = Pearson on ranks (ties averaged), computed per resample.
    rx = sps.rankdata(x[idx], axis=1)
    ry = sps.rankdata(y[idx], axis=1)
    spear = _rowwise_corr(rx, ry)
    return _ci(pear), _ci(spear)


def _rowwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denom
    return np.clip(r[np.isfinite(r)], -1.0, 1.0)


def _ci(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)
