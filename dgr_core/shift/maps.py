"""Maps: 2-D projections of the embeddings (PCA / UMAP), cached on disk (`projections/<key>.npz` + `.json`),
and the legend helper for colouring them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.shift.projection import Projection, project_with_info, projection_key
from dgr_core.shift.scores import ScoredSet
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

# UMAP above this many points runs as a `project` job (a few seconds to minutes of CPU), below it in the page.
UMAP_INLINE_MAX = 2000




def map_points(sets: dict[str, ScoredSet], segment: str = "total") -> tuple[np.ndarray, pd.DataFrame]:
    """Stacked embeddings of every set and one row per point: dataset, id, category, nll, hover text."""
    xs, rows = [], []
    for name, s in sets.items():
        xs.append(s.embeddings())
        f = s.frame
        rows.append(pd.DataFrame({
            "dataset": name, "id": f["id"].to_numpy(), "category": f.get("category", pd.Series([""] * len(f))).fillna(""),
            "nll": f[f"nll_{segment}"].to_numpy(), "prompt": f["prompt"].fillna("").astype(str).str.slice(0, 120),
        }))
    if not xs:
        return np.zeros((0, 0), np.float32), pd.DataFrame(columns=["dataset", "id", "category", "nll", "prompt"])
    return np.vstack(xs), pd.concat(rows, ignore_index=True)


def _projection_paths(ws: Workspace, key: str) -> tuple[Path, Path]:
    folder = ws.scores / "projections"
    return folder / f"{key}.npz", folder / f"{key}.json"


def projection_params(method: str, n_components: int = 2, seed: int = 0) -> dict[str, Any]:
    return {"n_components": int(n_components), "seed": int(seed)}


def cached_projection(ws: Workspace, X: np.ndarray, method: str, *, n_components: int = 2,
                      seed: int = 0) -> Projection | None:
    """The stored projection of exactly these points with these settings, or None."""
    key = projection_key(X, method, projection_params(method, n_components, seed))
    npz_path, meta_path = _projection_paths(ws, key)
    if not (npz_path.is_file() and meta_path.is_file()):
        return None
    meta = read_json(meta_path)
    with np.load(npz_path, allow_pickle=False) as npz:
        return Projection(npz["coords"], meta.get("method", method), meta.get("note", ""))


def compute_projection(ws: Workspace, X: np.ndarray, method: str, *, n_components: int = 2,
                       seed: int = 0) -> Projection:
    """Project (or read back) and store under `projection_key`: coords in .npz, method and note in .json."""
    cached = cached_projection(ws, X, method, n_components=n_components, seed=seed)
    if cached is not None:
        return cached
    params = projection_params(method, n_components, seed)
    key = projection_key(X, method, params)
    proj = project_with_info(X, method, n_components=n_components, seed=seed)  # type: ignore[arg-type]
    npz_path, meta_path = _projection_paths(ws, key)
    buf = io.BytesIO()
    np.savez(buf, coords=proj.coords)
    atomic_write_bytes(npz_path, buf.getvalue())
    atomic_write_json(meta_path, {"key": key, "requested": method, "method": proj.method, "note": proj.note,
                                  "params": params, "n": int(X.shape[0]), "dim": int(X.shape[1])})
    return proj


def needs_job(method: str, n_points: int) -> bool:
    """UMAP on many points runs as a `project` job; PCA and small UMAPs run in the page."""
    return method == "umap" and n_points > UMAP_INLINE_MAX


def top_groups(values: pd.Series, max_groups: int = 10) -> pd.Series:
    """The values with all but the `max_groups - 1` most frequent replaced by "other (k more)", so a map coloured
    by a column with many distinct values (multi-label categories) keeps a readable legend; unchanged when there
    are at most `max_groups` distinct values. Empty values read "(none)"."""
    vals = values.fillna("").astype(str).replace("", "(none)")
    counts = vals.value_counts()
    if len(counts) <= max_groups:
        return vals
    keep = set(counts.index[: max_groups - 1])
    return vals.where(vals.isin(keep), f"other ({len(counts) - len(keep)} more)")
