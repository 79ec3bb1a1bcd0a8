"""What every shift statistic shares: the result type (`ShiftStat`), input checks, and the resampling helpers
(multinomial bootstrap counts, percentile intervals, permutation p-values), all drawn from one seeded Generator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from dgr_core.errors import DGRError

CI_LEVEL = 0.95


MIN_SAMPLES = 2


class ShiftInputError(DGRError, ValueError):
    """The arrays given to a shift statistic are too small, misshapen or contain NaN/inf."""


@dataclass(frozen=True)
class ShiftStat:
    """One statistic between reference set A and test set B, ready to show and to save as JSON."""

    key: str  # stable machine name, e.g. "mmd_rbf"; use it to join with evaluation results
    name: str  # label for people, e.g. "MMD² (RBF)"
    family: str  # "likelihood" | "embedding" | "output"
    value: float
    ci_low: float  # bootstrap 95% percentile interval; NaN when it cannot be formed
    ci_high: float
    effect_size: float | None
    effect_size_name: str | None
    p_value: float | None  # None where no test is computed
    n_a: int  # samples actually used (after any subsampling)
    n_b: int
    description: str  # one line: what it measures and how to read it
    note: str = ""  # caveats for this particular run (subsampling, noise floor, approximations)

    def to_dict(self) -> dict:
        """Plain JSON-safe dict (NaN becomes None, since strict JSON has no NaN)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ShiftStat:
        """Inverse of `to_dict`: None in a required float field becomes NaN again."""
        out: dict[str, Any] = {f.name: d.get(f.name) for f in fields(cls) if f.name in d}
        for k in ("value", "ci_low", "ci_high"):
            out[k] = float("nan") if out.get(k) is None else float(out[k])
        return cls(**out)


def as_values(x: np.ndarray, what: str) -> np.ndarray:
    """1-D float array of per-sample values, at least MIN_SAMPLES long and all finite."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ShiftInputError(f"{what}: expected a 1-D array of per-sample values, got shape {arr.shape}")
    return check_rows(arr, what)


def as_samples(x: np.ndarray, what: str) -> np.ndarray:
    """2-D float array (n, d); a 1-D array is read as n samples of one feature."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShiftInputError(f"{what}: expected an (n, d) array of samples, got shape {arr.shape}")
    return check_rows(arr, what)


def check_rows(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.shape[0] < MIN_SAMPLES:
        raise ShiftInputError(f"{what}: needs at least {MIN_SAMPLES} samples, got {arr.shape[0]}")
    bad = int(np.size(arr) - np.isfinite(arr).sum())
    if bad:
        raise ShiftInputError(f"{what}: {bad} value(s) are NaN or infinite; drop or fix those samples first")
    return arr


def same_width(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ShiftInputError(f"A has {x.shape[1]} features but B has {y.shape[1]}; embed both with one model")


def subsample(x: np.ndarray, max_n: int, rng: np.random.Generator) -> np.ndarray:
    """At most max_n rows, chosen without replacement; order kept so results do not depend on row order noise."""
    if x.shape[0] <= max_n:
        return x
    return x[np.sort(rng.choice(x.shape[0], size=max_n, replace=False))]


def subsample_note(n_a: int, n_b: int, x: np.ndarray, y: np.ndarray) -> str:
    if (n_a, n_b) == (x.shape[0], y.shape[0]):
        return ""
    return f"random subsample of {x.shape[0]} of {n_a} (A) and {y.shape[0]} of {n_b} (B) samples"


def boot_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) multinomial counts: row r says how often each sample appears in bootstrap resample r."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def percentile_ci(boot: np.ndarray) -> tuple[float, float]:
    """Percentile interval ignoring NaN resamples (degenerate ones at tiny n); NaN if none are usable."""
    boot = np.asarray(boot, dtype=np.float64)
    if not np.isfinite(boot).any():
        return float("nan"), float("nan")
    tail = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.nanpercentile(boot[np.isfinite(boot)], [tail, 100 - tail])
    return float(lo), float(hi)


def perm_p(observed: float, null: np.ndarray) -> float:
    """One-sided permutation p-value with the +1 correction, so it is never 0 and is valid at any n_perm."""
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


def perm_indicators(rng: np.random.Generator, m: int, n: int, n_perm: int) -> np.ndarray:
    """(n_perm, m+n) 0/1 matrix; a 1 marks a row relabelled as A in that permutation."""
    labels = np.tile(np.r_[np.ones(m), np.zeros(n)], (n_perm, 1))
    return rng.permuted(labels, axis=1)
