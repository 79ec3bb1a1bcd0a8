"""2-D (or k-D) projections of embeddings for the shift page's scatter plot, plus a cache key for them.

``project(X, "pca")`` is the instant path (sklearn PCA, deterministic); ``project(X, "umap")`` runs umap-learn
with ``n_neighbors = min(15, n - 1)``. Below `MIN_UMAP_SAMPLES` points UMAP is not meaningful, so it falls back to
PCA and says so (a `ProjectionFallbackWarning`, and in ``Projection.note`` from `project_with_info`).

UMAP's first call in a process pays ~10 s of numba compilation (later calls are fast): callers should cache
results under `projection_key` and run large projections outside the UI thread.

Example::

    from dgr_core.shift.projection import project, projection_key
    key = projection_key(emb, "umap", {"n_components": 2, "seed": 0})
    xy = project(emb, "umap", n_components=2, seed=0)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dgr_core.errors import DGRError

Method = Literal["pca", "umap"]
METHODS: tuple[str, ...] = ("pca", "umap")
MIN_UMAP_SAMPLES = 5
KEY_VERSION = 1  # bump when a change in this file changes the projection computed for the same inputs

# UMAP's own small-data path computes exact neighbours too, but through numba kernels that compile for ~10 s on
# every new process; sklearn's exact kNN gives the same graph with no compilation below this size.
_EXACT_KNN_MAX = 4096


class ProjectionError(DGRError, ValueError):
    """The array cannot be projected (empty, not 2-D, NaN/inf) or the method is unknown."""


class ProjectionFallbackWarning(UserWarning):
    """The requested method could not run on this input and PCA was used instead."""


@dataclass(frozen=True)
class Projection:
    """Coordinates plus what actually produced them (which may differ from what was asked)."""

    coords: np.ndarray  # (n, n_components) float64
    method: str  # method actually used
    note: str = ""  # why it differs from the request, or "" when it does not


def _check_input(X: np.ndarray, method: str, n_components: int) -> np.ndarray:
    if method not in METHODS:
        raise ProjectionError(f"unknown projection method {method!r}; choose one of {', '.join(METHODS)}")
    if n_components < 1:
        raise ProjectionError(f"n_components must be at least 1, got {n_components}")
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ProjectionError(f"expected a non-empty (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ProjectionError("the array contains NaN or infinite values")
    return x


def _pca(x: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, str]:
    """PCA coordinates; zero-padded when n or d is smaller than n_components (PCA cannot give more)."""
    from sklearn.decomposition import PCA

    k = min(n_components, x.shape[0], x.shape[1])
    coords = PCA(n_components=k, random_state=seed).fit_transform(x) if x.shape[0] > 1 else np.zeros((1, k))
    if k == n_components:
        return coords, ""
    pad = np.zeros((x.shape[0], n_components - k))
    return np.hstack([coords, pad]), f"only {k} component(s) exist for shape {x.shape}; the rest are zeros"


def _exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """kNN including each point itself (UMAP expects that), as UMAP's (indices, float32 distances)."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    return idx, dist.astype(np.float32)


def _umap(x: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    import umap

    n_neighbors = min(15, x.shape[0] - 1)
    knn = (*_exact_knn(x, n_neighbors), None) if x.shape[0] < _EXACT_KNN_MAX else (None, None, None)
    reducer = umap.UMAP(
        n_components=n_components, n_neighbors=n_neighbors, random_state=seed, n_jobs=1, precomputed_knn=knn
    )
    with warnings.catch_warnings():
        # Expected and harmless here: a seed forces one thread; our kNN has no search index (we never transform).
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        warnings.filterwarnings("ignore", message=".*is not an NNDescent object.*")
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def project_with_info(X: np.ndarray, method: Method, *, n_components: int = 2, seed: int = 0) -> Projection:
    """Project the rows of X to n_components dimensions and report which method actually ran."""
    x = _check_input(X, method, n_components)
    # UMAP needs a few neighbours and its spectral init needs n > n_components + 1.
    needed = max(MIN_UMAP_SAMPLES, n_components + 2)
    if method == "umap" and x.shape[0] >= needed:
        return Projection(_umap(x, n_components, seed), "umap")
    coords, note = _pca(x, n_components, seed)
    if method == "umap":
        fallback = f"UMAP needs at least {needed} points here, got {x.shape[0]}: showing PCA instead"
        note = f"{fallback}; {note}" if note else fallback
    return Projection(coords, "pca", note)


def project(X: np.ndarray, method: Method, *, n_components: int = 2, seed: int = 0) -> np.ndarray:
    """(n, n_components) coordinates; warns `ProjectionFallbackWarning` when UMAP falls back to PCA."""
    result = project_with_info(X, method, n_components=n_components, seed=seed)
    if result.method != method:
        warnings.warn(result.note, ProjectionFallbackWarning, stacklevel=2)
    return result.coords


def _jsonable(obj: object) -> object:
    """numpy scalars hash like the Python numbers they equal (np.int64(2) and 2 give one key); else str()."""
    return obj.item() if isinstance(obj, np.generic) else str(obj)


def projection_key(X: np.ndarray, method: str, params: dict) -> str:
    """sha256 hex over the array (bytes, shape, dtype), the method and params, for caching projections.

    Pass every setting that changes the output in params (n_components, seed, ...). The array is hashed in
    C order, so a transposed view and its contiguous copy of the same values give the same key.
    """
    x = np.ascontiguousarray(X)
    header = {
        "op": "projection", "version": KEY_VERSION, "method": method, "params": params,
        "shape": list(x.shape), "dtype": x.dtype.str,
    }
    h = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":"), default=_jsonable).encode())
    h.update(x.tobytes())
    return h.hexdigest()
