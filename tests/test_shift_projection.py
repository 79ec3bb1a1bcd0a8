"""Projections: shapes, determinism, UMAP on a small set (and its fallback below 5 points), cache-key sensitivity.

The first UMAP fit in a process compiles numba kernels (~10 s); the UMAP tests share one module-scoped fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dgr_core.shift.projection import (
    ProjectionError,
    ProjectionFallbackWarning,
    project,
    project_with_info,
    projection_key,
)


def _data(n: int = 60, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _two_clusters(n_each: int = 30, d: int = 16) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.vstack([rng.normal(size=(n_each, d)), rng.normal(size=(n_each, d)) + 10.0])


@pytest.fixture(scope="module")
def umap_fit() -> tuple[np.ndarray, np.ndarray]:
    x = _two_clusters()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProjectionFallbackWarning)
        return x, project(x, "umap", seed=0)


# --- PCA ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pca_shape_and_centring(k):
    coords = project(_data(), "pca", n_components=k)
    assert coords.shape == (60, k)
    assert np.allclose(coords.mean(0), 0.0, atol=1e-10)


def test_pca_deterministic_and_variance_ordered():
    x = _data(seed=2)
    first, again = project(x, "pca", seed=0), project(x, "pca", seed=0)
    assert np.array_equal(first, again)
    assert first[:, 0].var() >= first[:, 1].var()


def test_pca_pads_when_fewer_components_exist():
    info = project_with_info(_data(n=10, d=1), "pca", n_components=2)
    assert info.coords.shape == (10, 2) and np.all(info.coords[:, 1] == 0) and "zeros" in info.note
    assert project(np.ones((1, 5)), "pca").shape == (1, 2)


# --- UMAP ---------------------------------------------------------------------------------------------------


def test_umap_on_small_set_runs(umap_fit):
    x, coords = umap_fit
    assert coords.shape == (60, 2) and np.isfinite(coords).all()


def test_umap_keeps_separated_clusters_apart(umap_fit):
    _, coords = umap_fit
    a, b = coords[:30], coords[30:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    spread = max(np.linalg.norm(a - a.mean(0), axis=1).max(), np.linalg.norm(b - b.mean(0), axis=1).max())
    assert gap > spread


def test_umap_deterministic_given_seed(umap_fit):
    x, coords = umap_fit
    assert np.allclose(project(x, "umap", seed=0), coords)
    assert project_with_info(x, "umap", n_components=3, seed=0).coords.shape == (60, 3)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_umap_falls_back_to_pca_on_tiny_sets(n):
    with pytest.warns(ProjectionFallbackWarning, match="PCA"):
        coords = project(_data(n=n), "umap")
    assert coords.shape == (n, 2)
    info = project_with_info(_data(n=n), "umap")
    assert info.method == "pca" and "UMAP needs" in info.note


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "method", "match"),
    [
        (_data(), "tsne", "unknown projection method"),
        (np.empty((0, 3)), "pca", "non-empty"),
        (np.ones(5), "pca", "non-empty"),
        (np.full((5, 3), np.nan), "pca", "NaN"),
    ],
)
def test_bad_input_is_a_clear_error(x, method, match):
    with pytest.raises(ProjectionError, match=match):
        project(x, method)
    assert issubclass(ProjectionError, ValueError)


# --- cache key ----------------------------------------------------------------------------------------------


def test_projection_key_is_stable_and_sensitive():
    x = _data(n=20, d=4)
    base = projection_key(x, "umap", {"n_components": 2, "seed": 0})
    assert len(base) == 64 and base == projection_key(x.copy(), "umap", {"seed": 0, "n_components": 2})
    assert base == projection_key(x, "umap", {"n_components": np.int64(2), "seed": 0})
    changed = {
        "params": projection_key(x, "umap", {"n_components": 3, "seed": 0}),
        "seed": projection_key(x, "umap", {"n_components": 2, "seed": 1}),
        "method": projection_key(x, "pca", {"n_components": 2, "seed": 0}),
        "data": projection_key(x + 1e-9, "umap", {"n_components": 2, "seed": 0}),
        "dtype": projection_key(x.astype(np.float32), "umap", {"n_components": 2, "seed": 0}),
        "shape": projection_key(x.reshape(40, 2), "umap", {"n_components": 2, "seed": 0}),
    }
    assert base not in changed.values() and len(set(changed.values())) == len(changed)


def test_projection_key_ignores_memory_layout():
    x = _data(n=8, d=3)
    assert projection_key(np.asfortranarray(x), "pca", {}) == projection_key(x, "pca", {})
