"""Properties of the shift statistics: ~0 on one distribution, detect a planted shift, honest intervals,
deterministic given a seed, clear errors on unusable input. No magic numbers beyond loose tolerances."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import cdist

from dgr_core.errors import DGRError
from dgr_core.shift import stats as S

DIM = 16
SHIFT = 0.5  # per coordinate, i.e. a mean shift of norm 2 in 16 dims
# Sentence embeddings sit far from the origin; the offset keeps cosine-based statistics meaningful.
OFFSET = 3.0

# Embedding statistics with a test: (function, value that means "no shift").
TESTED = [pytest.param(fn, null, id=fn.__name__)
          for fn, null in ((S.mmd_rbf, 0.0), (S.energy_distance, 0.0), (S.classifier_auc, 0.5))]
ALL_TWO_SAMPLE = [S.mmd_rbf, S.energy_distance, S.classifier_auc, S.centroid_distance, S.centroid_cosine_distance]


def _pair(seed: int, n: int = 150, shift: float = 0.0, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) + OFFSET, rng.normal(size=(n, dim)) + OFFSET + shift


def _nll(seed: int, n: int = 200, delta: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 0.5, size=n), rng.normal(2.0 + delta, 0.5, size=n)


def _contains(stat: S.ShiftStat, x: float) -> bool:
    return stat.ci_low <= x <= stat.ci_high


# --- no shift -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fn", "null"), TESTED)
def test_same_distribution_is_near_null(fn, null):
    same, shifted = fn(*_pair(1), seed=0), fn(*_pair(1, shift=SHIFT), seed=0)
    assert _contains(same, null)
    assert same.p_value > 0.05
    # "Near zero" relative to what a real shift of this size gives, so no absolute scale is assumed.
    assert abs(same.value - null) < 0.2 * abs(shifted.value - null)


def test_classifier_auc_near_half_on_same_distribution():
    assert abs(S.classifier_auc(*_pair(2), seed=0).value - 0.5) < 0.1


@pytest.mark.parametrize("fn", [S.centroid_distance, S.centroid_cosine_distance], ids=lambda f: f.__name__)
def test_centroid_distances_not_significant_on_same_distribution(fn):
    same, shifted = fn(*_pair(3), seed=0), fn(*_pair(3, shift=_orthogonal_shift()), seed=0)
    assert same.p_value > 0.05
    assert same.value < 0.3 * shifted.value


def test_centroid_distance_is_near_its_noise_floor_on_same_distribution():
    stat = S.centroid_distance(*_pair(4), seed=0)
    floor = float(stat.note.split("≈")[1].split()[0])
    assert 0.3 * floor < stat.value < 2.5 * floor


def test_likelihood_stats_null():
    a, b = _nll(5)
    delta, ratio = S.mean_delta_nll(a, b), S.perplexity_ratio(a, b)
    assert _contains(delta, 0.0) and delta.p_value > 0.05 and abs(delta.effect_size) < 0.2
    assert _contains(ratio, 1.0)


# --- planted shift --------------------------------------------------------------------------------------------


def _orthogonal_shift() -> np.ndarray:
    """A shift that changes direction, not only length, relative to the common offset (1, ..., 1)·OFFSET."""
    v = np.zeros(DIM)
    v[: DIM // 2], v[DIM // 2 :] = 1.0, -1.0
    return v


@pytest.mark.parametrize(("fn", "null"), TESTED)
def test_detects_planted_shift(fn, null):
    stat = fn(*_pair(6, shift=SHIFT), seed=0)
    assert stat.p_value < 0.01
    assert not _contains(stat, null)
    assert stat.value > null


def test_classifier_auc_high_on_planted_shift():
    stat = S.classifier_auc(*_pair(7, shift=SHIFT), seed=0)
    assert stat.value > 0.7 and stat.ci_low > 0.5 and stat.effect_size > 0


@pytest.mark.parametrize("fn", [S.centroid_distance, S.centroid_cosine_distance], ids=lambda f: f.__name__)
def test_centroid_distances_detect_planted_shift(fn):
    stat = fn(*_pair(8, shift=_orthogonal_shift()), seed=0)
    assert stat.p_value < 0.01 and stat.ci_low > 0


def test_centroid_distance_value_and_standardized_effect():
    x, y = _pair(9, n=400, shift=SHIFT)
    stat = S.centroid_distance(x, y)
    assert stat.value == pytest.approx(np.linalg.norm(y.mean(0) - x.mean(0)))
    # Unit-variance coordinates: the standardized effect is close to the true shift norm (0.5 * 4 = 2).
    assert stat.effect_size == pytest.approx(SHIFT * math.sqrt(DIM), rel=0.15)


def test_likelihood_stats_detect_shift():
    a, b = _nll(10, delta=0.3)
    delta, ratio = S.mean_delta_nll(a, b, seed=3), S.perplexity_ratio(a, b, seed=3)
    assert delta.p_value < 0.01 and delta.ci_low > 0 and delta.effect_size > 0.3
    assert ratio.ci_low > 1
    # Same seed, same resamples: the ratio's interval is exactly exp of the ΔNLL interval.
    assert ratio.value == pytest.approx(math.exp(delta.value))
    assert (ratio.ci_low, ratio.ci_high) == pytest.approx((math.exp(delta.ci_low), math.exp(delta.ci_high)))


def test_energy_distance_grows_with_shift():
    values = [S.energy_distance(*_pair(11, shift=s), seed=0, n_perm=0).value for s in (0.25, 0.5, 1.0)]
    assert values == sorted(values)


# --- intervals and tests are honest ----------------------------------------------------------------------------


def test_mean_delta_nll_interval_coverage():
    hits_null = hits_shift = 0
    for seed in range(50):
        hits_null += _contains(S.mean_delta_nll(*_nll(100 + seed, n=40), seed=seed), 0.0)
        hits_shift += _contains(S.mean_delta_nll(*_nll(200 + seed, n=40, delta=0.25), seed=seed), 0.25)
    assert hits_null >= 0.85 * 50
    assert hits_shift >= 0.85 * 50


@pytest.mark.parametrize(("fn", "null"), TESTED)
def test_null_interval_coverage_and_false_positives(fn, null):
    covered = rejected = 0
    runs = 20
    for seed in range(runs):
        stat = fn(*_pair(300 + seed, n=40, dim=8), seed=seed, n_boot=100, **({} if fn is S.classifier_auc else
                                                                              {"n_perm": 100}))
        covered += _contains(stat, null)
        rejected += stat.p_value < 0.05
    assert covered >= 0.85 * runs
    assert rejected <= 0.2 * runs


# --- estimators match their textbook definitions -------------------------------------------------------------


def test_mmd_matches_naive_unbiased_estimator():
    x, y = _pair(12, n=25, shift=0.3, dim=4)
    pooled = np.vstack([x, y])
    sq = cdist(pooled, pooled, "sqeuclidean")
    sigma2 = np.median(sq[np.triu_indices_from(sq, k=1)])
    k = np.exp(-sq / (2 * sigma2))
    m = n = 25
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    naive = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
             - 2 * kxy.mean())
    assert S.mmd_rbf(x, y, n_perm=0).value == pytest.approx(naive, abs=1e-10)


def test_energy_distance_agrees_with_scipy_in_one_dimension():
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=30), rng.normal(0.5, 1.3, size=40)
    u = S.energy_distance(x, y, n_perm=0).value
    # scipy reports sqrt of the V-statistic, which also averages the zero self-distances within each set.
    within_x, within_y = cdist(x[:, None], x[:, None]).sum() / (30 * 29), cdist(y[:, None], y[:, None]).sum() / (40 * 39)
    v = u + within_x / 30 + within_y / 40
    assert math.sqrt(v) == pytest.approx(sps.energy_distance(x, y), rel=1e-9)


# --- determinism ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ALL_TWO_SAMPLE, ids=lambda f: f.__name__)
def test_two_sample_stats_deterministic_given_seed(fn):
    x, y = _pair(14, n=60, shift=0.2)
    first, again, other = fn(x, y, seed=7), fn(x, y, seed=7), fn(x, y, seed=8)
    assert first.to_dict() == again.to_dict()
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


@pytest.mark.parametrize("fn", [S.mean_delta_nll, S.perplexity_ratio], ids=lambda f: f.__name__)
def test_likelihood_stats_deterministic_given_seed(fn):
    a, b = _nll(15)
    assert fn(a, b, seed=1).to_dict() == fn(a, b, seed=1).to_dict()
    assert fn(a, b, seed=1).ci_low != fn(a, b, seed=2).ci_low


def test_subsampling_is_seeded_and_reported():
    x, y = _pair(16, n=200, shift=0.2)
    stat = S.mmd_rbf(x, y, max_n=50, seed=4)
    assert (stat.n_a, stat.n_b) == (50, 50) and "subsample" in stat.note
    assert stat.to_dict() == S.mmd_rbf(x, y, max_n=50, seed=4).to_dict()


# --- tiny and bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("fn", ALL_TWO_SAMPLE, ids=lambda f: f.__name__)
def test_tiny_sets_run(fn, n):
    stat = fn(*_pair(17, n=n, shift=0.5))
    assert math.isfinite(stat.value)
    # Intervals may be NaN when every resample is degenerate, but never half-formed.
    assert math.isnan(stat.ci_low) == math.isnan(stat.ci_high)
    assert (stat.n_a, stat.n_b) == (n, n)


@pytest.mark.parametrize("fn", [S.mean_delta_nll, S.perplexity_ratio, S.output_similarity])
def test_tiny_paired_or_1d_sets_run(fn):
    a, b = np.array([1.0, 2.0, 3.5]), np.array([2.0, 2.5, 4.0])
    args = (np.c_[a, b], np.c_[b, a + 1]) if fn is S.output_similarity else (a, b)
    assert math.isfinite(fn(*args).value)


@pytest.mark.parametrize("fn", [*ALL_TWO_SAMPLE, S.mean_delta_nll, S.output_similarity])
def test_fewer_than_two_samples_is_a_clear_error(fn):
    one = np.ones((1, 4)) if fn is not S.mean_delta_nll else np.ones(1)
    many = np.ones((5, 4)) if fn is not S.mean_delta_nll else np.ones(5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fn(one, many if fn is not S.output_similarity else one)
    assert issubclass(S.ShiftInputError, DGRError)


def test_bad_inputs_are_clear_errors():
    x, y = _pair(18, n=10)
    with pytest.raises(ValueError, match="NaN"):
        S.mmd_rbf(np.where(np.eye(10, DIM) == 1, np.nan, x), y)
    with pytest.raises(ValueError, match="features"):
        S.energy_distance(x, y[:, :3])
    with pytest.raises(ValueError, match="1-D"):
        S.mean_delta_nll(x, y)
    with pytest.raises(ValueError, match="shape"):
        S.output_similarity(x, y[:5])
    with pytest.raises(ValueError, match="zeros"):
        S.output_similarity(np.zeros_like(x), y)


# --- output similarity ---------------------------------------------------------------------------------------


def test_output_similarity_orders_by_closeness():
    rng = np.random.default_rng(19)
    model = rng.normal(size=(80, 64))
    sims = [S.output_similarity(model + noise * rng.normal(size=model.shape), model).value for noise in (0, 0.5, 2)]
    assert sims[0] == pytest.approx(1.0) and sims[0] > sims[1] > sims[2]
    unrelated = S.output_similarity(rng.normal(size=(80, 64)), model)
    assert abs(unrelated.value) < 0.1 and _contains(unrelated, 0.0)
    assert unrelated.p_value > 0.05 and abs(unrelated.effect_size) < 0.1 and unrelated.family == "output"


def test_output_similarity_pairing_gain_tells_one_stock_answer_from_paired_answers():
    # A stock answer (every row alike, e.g. one fixed refusal) is similar to the model's answers on average but
    # no more to the answer of its own prompt: high similarity, gain ~0. Paired answers have a clear gain.
    rng = np.random.default_rng(24)
    shared = 3.0 * rng.normal(size=64)
    model = shared + rng.normal(size=(60, 64))
    stock = np.tile(shared + 0.3 * rng.normal(size=64), (60, 1))
    paired = model + 0.5 * rng.normal(size=model.shape)
    s_stock, s_paired = S.output_similarity(stock, model, seed=0), S.output_similarity(paired, model, seed=0)
    assert s_stock.value > 0.8 and abs(s_stock.effect_size) < 0.02 and s_stock.p_value > 0.05
    assert s_paired.effect_size > 0.05 and s_paired.p_value < 0.01
    # Brute force: mean cosine of matched rows minus the mean over every mismatched (i, j).
    cos = 1 - cdist(paired, model, "cosine")
    off = (cos.sum() - np.trace(cos)) / (60 * 59)
    assert s_paired.effect_size == pytest.approx(np.trace(cos) / 60 - off)


def test_embedding_stats_have_an_effect_size():
    x, y = _pair(25, n=60, shift=SHIFT)
    for fn in ALL_TWO_SAMPLE:
        stat = fn(x, y, seed=0)
        assert stat.effect_size is not None and math.isfinite(stat.effect_size) and stat.effect_size_name
    mmd = S.mmd_rbf(x, y, seed=0)
    assert mmd.effect_size == pytest.approx(math.sqrt(mmd.value)) and 0 < mmd.effect_size < math.sqrt(2)
    cos = S.centroid_cosine_distance(x, y, seed=0)
    assert math.cos(math.radians(cos.effect_size)) == pytest.approx(1 - cos.value)


# --- table, convenience, serialization -----------------------------------------------------------------------


def test_compare_sets_runs_what_is_available():
    (a, b), (x, y) = _nll(20, n=50), _pair(20, n=50)
    keys = [s.key for s in S.compare_sets(a, b, x, y, seed=0, emb_dataset_answers=x, emb_model_answers=y)]
    assert keys == ["mean_delta_nll", "perplexity_ratio", "mmd_rbf", "energy_distance", "classifier_auc",
                    "centroid_distance", "centroid_cosine_distance", "output_similarity"]
    only_nll = S.compare_sets(a, b, None, None, seed=0)
    assert [s.family for s in only_nll] == ["likelihood", "likelihood"]
    assert [s.to_dict() for s in only_nll] == [s.to_dict() for s in S.compare_sets(a, b, None, None, seed=0)]


def test_shift_table_has_one_readable_row_per_stat():
    stats = S.compare_sets(*_nll(21, n=30), *_pair(21, n=30), seed=0)
    table = S.shift_table(stats)
    assert list(table.index) == [s.key for s in stats]
    assert list(table.columns) == list(S.TABLE_COLUMNS.values())
    assert table.loc["mean_delta_nll", "Value"] == stats[0].value
    assert S.shift_table([]).empty


def test_shift_stat_json_round_trip_without_nan():
    stat = S.classifier_auc(*_pair(22, n=2))
    stat = S.ShiftStat(**{**stat.to_dict(), "ci_low": float("nan"), "ci_high": float("nan")})
    text = json.dumps(stat.to_dict(), allow_nan=False)
    back = S.ShiftStat.from_dict(json.loads(text))
    assert back.to_dict() == stat.to_dict() and math.isnan(back.ci_low)
    assert all(s.description for s in S.compare_sets(*_nll(23, n=5), *_pair(23, n=5)))
