"""Paired statistics (dgr_core.evaluate.paired) on planted differences, identical runs and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dgr_core.errors import DGRError
from dgr_core.evaluate.paired import accuracy_with_ci, mcnemar, paired_bootstrap


def _planted(n: int = 300, p_a: float = 0.4, flips: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Run b = run a with `flips` wrong items made right: b is much better than a on the same items."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < p_a
    b = a.copy()
    b[np.flatnonzero(~a)[:flips]] = True
    return a, b


def test_mcnemar_detects_planted_improvement() -> None:
    a, b = _planted()
    res = mcnemar(a, b)
    assert (res.b01, res.b10) == (60, 0)
    assert res.p_value < 0.01
    assert res.delta == pytest.approx(60 / 300)
    assert res.mean_b > res.mean_a and res.n == 300


def test_mcnemar_matches_exact_binomial_and_is_symmetric() -> None:
    a = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 1, 1, 1, 1, 0, 1, 1, 0], dtype=bool)
    res = mcnemar(a, b)
    assert (res.b01, res.b10) == (4, 2)
    assert res.p_value == pytest.approx(stats.binomtest(4, 6, 0.5).pvalue)
    assert mcnemar(b, a).p_value == pytest.approx(res.p_value)
    assert mcnemar(b, a).delta == pytest.approx(-res.delta)


def test_identical_runs_give_p_one() -> None:
    a, _ = _planted()
    assert mcnemar(a, a).p_value == 1.0
    boot = paired_bootstrap(a, a)
    assert boot.p_value == 1.0 and boot.delta == 0.0
    assert boot.ci_low == boot.ci_high == 0.0


def test_bootstrap_detects_planted_improvement_and_covers_delta() -> None:
    a, b = _planted()
    res = paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert res.p_value < 0.01
    assert res.ci_low < res.delta < res.ci_high and res.ci_low > 0
    assert res.confidence == 0.95


def test_bootstrap_is_seeded_and_accepts_continuous_scores() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    b = a + rng.normal(scale=0.5, size=200)  # no true difference
    r1, r2 = paired_bootstrap(a, b, seed=5), paired_bootstrap(a, b, seed=5)
    assert r1 == r2
    assert r1.p_value > 0.01 and r1.ci_low < 0 < r1.ci_high


def test_no_difference_is_not_significant() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(400) < 0.5, rng.random(400) < 0.5
    assert mcnemar(a, b).p_value > 0.01


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1, 0, 1], [1, 0], "a has 3 items, b has 2"),
        ([], [], "empty"),
        ([[1, 0]], [[1, 0]], "1-D"),
        ([1, np.nan], [1, 0], "NaN"),
        ([1, 2], [1, 0], "booleans or 0/1"),
        (["x", "y"], [1, 0], "numbers or booleans"),
    ],
)
def test_mcnemar_errors(a: list, b: list, message: str) -> None:
    with pytest.raises(DGRError, match=message):
        mcnemar(a, b)


def test_bootstrap_errors() -> None:
    with pytest.raises(DGRError, match="same items"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(DGRError, match="n_boot"):
        paired_bootstrap([1, 0], [1, 0], n_boot=10)
    with pytest.raises(DGRError, match="confidence"):
        paired_bootstrap([1, 0], [1, 0], confidence=1.5)


def test_accuracy_with_wilson_interval() -> None:
    mean, lo, hi = accuracy_with_ci(np.array([True] * 8 + [False] * 2), seed=0)
    assert mean == 0.8
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)  # textbook values
    assert accuracy_with_ci([0, 0, 0], seed=0)[1] == 0.0  # stays inside [0, 1] at the edges
    assert accuracy_with_ci([1, 1, 1], seed=0)[2] == 1.0
    assert accuracy_with_ci([1, 0], seed=0) == accuracy_with_ci([1, 0], seed=99)
    with pytest.raises(DGRError):
        accuracy_with_ci([], seed=0)


def test_cluster_bootstrap_counts_items_not_samples() -> None:
    """k samples of the same items add no information about item difficulty: the interval over 20 items x 10
    samples is about as wide as over 20 items x 1, and much wider than 200 independent items would give."""
    from dgr_core.evaluate.paired import cluster_bootstrap_ci

    items = [np.full(10, float(i % 2)) for i in range(20)]  # every sample repeats its item's outcome
    mean, lo, hi = cluster_bootstrap_ci(items, seed=1)
    one = accuracy_with_ci(np.array([i % 2 for i in range(20)], dtype=bool))
    assert mean == 0.5 and hi - lo > 0.6 * (one[2] - one[1])
    naive = accuracy_with_ci(np.concatenate(items).astype(bool))
    assert hi - lo > 2 * (naive[2] - naive[1])


def test_pass_at_k() -> None:
    from dgr_core.evaluate.paired import pass_at_k

    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))
    with pytest.raises(DGRError):
        pass_at_k(2, 1, 3)


def test_cluster_interval_never_collapses_when_every_item_scores_the_same() -> None:
    from dgr_core.evaluate.paired import cluster_bootstrap_ci, wilson_interval

    mean, lo, hi = cluster_bootstrap_ci([np.zeros(2) for _ in range(6)])
    assert (mean, lo) == (0.0, 0.0) and hi == pytest.approx(wilson_interval(0.0, 6)[1]) and hi > 0.3
