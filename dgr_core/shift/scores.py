"""Score access: find a dataset's cached scores under a target model and read them (no model loads).

    handle = model_handle(ModelSpec("demo"), "hf", ws)
    scored = load_scored_set(ws, "demo-gsm8k-100", ScoreConfig(), handle)   # None until a score job has run

Reading a store with many chunks is memoized in this process per (folder, file stamps), so a page that reruns
reads nothing twice, and a finished score job (new chunk files) is seen at once. The memos are thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError
from dgr_core.scoring.api import NLL_SEGMENTS, ScoreConfig, ScoreResult, text_hash
from dgr_core.scoring.cache import ScoreStore, op_key, sample_key
from dgr_core.shift.handle import ModelHandle, model_handle, score_meta
from dgr_core.shift.memo import Memo
from dgr_core.workspace import Workspace

SEGMENTS = NLL_SEGMENTS


_STORE_TABLES = Memo(8)
_FRAMES = Memo(8)
_CHUNK_EMB = Memo(4096)
_SETS = Memo(32)


def _store_stamp(store_dir: Path) -> tuple:
    chunks = store_dir / "chunks"
    if not chunks.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in chunks.glob("*.parquet")))


def _store_rows(store_dir: Path) -> pd.DataFrame:
    """Every complete chunk's per-sample rows, indexed by sample key, with `_chunk` and `_row` (memoized)."""
    stamp = _store_stamp(store_dir)
    memo_key = (str(store_dir), stamp)
    if (hit := _STORE_TABLES.get(memo_key)) is not None:
        return hit
    parts = []
    for name, _ in stamp:
        t = pd.read_parquet(store_dir / "chunks" / name)
        t["_chunk"], t["_row"] = Path(name).stem, np.arange(len(t))
        parts.append(t)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["sample_key", "_chunk", "_row"])
    # A sample in two chunks (re-scored after an interrupted write) resolves as ScoreStore.index does: last wins.
    rows = rows.drop_duplicates("sample_key", keep="last").set_index("sample_key")
    return _STORE_TABLES.put(memo_key, rows)


def _chunk_embeddings(store_dir: Path, chunk: str) -> np.ndarray:
    path = store_dir / "chunks" / f"{chunk}.npz"
    key = (str(path), path.stat().st_mtime_ns)
    if (hit := _CHUNK_EMB.get(key)) is not None:
        return hit
    with np.load(path, allow_pickle=False) as npz:  # reads only this member of the archive
        return _CHUNK_EMB.put(key, npz["embeddings"])


def _keys_for(df: pd.DataFrame, store_key: str) -> list[str]:
    rows = df[[c for c in ("prompt", "reasoning", "answer", "think_status") if c in df.columns]].to_dict("records")
    return [sample_key(store_key, text_hash(r)) for r in rows]


@dataclass
class ScoreLookup:
    """How much of a dataset is in the score cache for one model and config."""

    dataset: str
    n_rows: int
    n_cached: int
    store_key: str

    @property
    def complete(self) -> bool:
        return self.n_rows > 0 and self.n_cached == self.n_rows


def _lookup(ws: Workspace, df: pd.DataFrame, meta: dict[str, Any]) -> tuple[str, list[str], pd.DataFrame]:
    key = op_key(meta)
    keys = _keys_for(df, key)
    return key, keys, _store_rows(ws.scores / key)


def score_lookup(ws: Workspace, dataset: str, cfg: ScoreConfig, handle: ModelHandle | None = None) -> ScoreLookup:
    """Counts of cached vs total samples of a dataset (no computation)."""
    handle = handle or model_handle(cfg.model, cfg.backend, ws)
    df = DatasetStore(ws).load(dataset)
    key, keys, rows = _lookup(ws, df, score_meta(handle, cfg))
    return ScoreLookup(dataset, len(df), int(pd.Index(keys).isin(rows.index).sum()), key)


def load_scores(ws: Workspace, dataset: str, cfg: ScoreConfig, handle: ModelHandle | None = None) -> ScoreResult | None:
    """The dataset's scores from the cache, or None when any sample is missing. Computes nothing."""
    scored = load_scored_set(ws, dataset, cfg, handle)
    return scored.result if scored is not None else None


@dataclass
class ScoredSet:
    """One dataset with its scores: `frame` = canonical rows + score columns, in dataset order."""

    name: str
    frame: pd.DataFrame
    result: ScoreResult
    _emb: np.ndarray | None = field(default=None, repr=False)

    def embeddings(self) -> np.ndarray:
        """[n, hidden] pooled hidden states of the target model, in frame order."""
        if self._emb is None:
            self._emb = _embeddings(self.result.store.dir, self.frame)
        return self._emb

    def nll(self, segment: str = "total") -> np.ndarray:
        return self.frame[f"nll_{segment}"].to_numpy(np.float64)


def _embeddings(store_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    out: np.ndarray | None = None
    for chunk, idx in frame.groupby("_chunk", sort=False).indices.items():
        emb = _chunk_embeddings(store_dir, chunk)
        if out is None:
            out = np.empty((len(frame), emb.shape[1]), dtype=np.float32)
        out[idx] = emb[frame["_row"].to_numpy()[idx]]
    return out if out is not None else np.zeros((0, 0), np.float32)


CANONICAL_KEEP = ("id", "prompt", "reasoning", "answer", "source", "category", "think_status", "parent_id")


def load_scored_set(ws: Workspace, dataset: str, cfg: ScoreConfig,
                    handle: ModelHandle | None = None) -> ScoredSet | None:
    """A dataset joined with its cached scores, or None when any sample is not scored yet (memoized)."""
    handle = handle or model_handle(cfg.model, cfg.backend, ws)
    store = DatasetStore(ws)
    info = store.info(dataset)
    meta = score_meta(handle, cfg)
    store_dir = ws.scores / op_key(meta)
    memo_key = (str(ws.root), dataset, info.fingerprint, info.created_at, str(store_dir), _store_stamp(store_dir))
    if (hit := _SETS.get(memo_key)) is not None:
        return hit
    df = store.load(dataset)
    key, keys, rows = _lookup(ws, df, meta)
    if df.empty or not pd.Index(keys).isin(rows.index).all():
        return None
    scores = rows.loc[keys].reset_index()
    canon = df[[c for c in CANONICAL_KEEP if c in df.columns]].reset_index(drop=True)
    canon["id"] = canon["id"].astype(str)
    frame = pd.concat([canon, scores.drop(columns=[c for c in scores.columns if c in canon.columns])], axis=1)
    table = scores.drop(columns=["_chunk", "_row"])
    table.insert(0, "id", canon["id"].to_numpy())
    result = ScoreResult(ScoreStore(ws.scores, meta), canon["id"].tolist(), keys, table, 0)
    return _SETS.put(memo_key, ScoredSet(dataset, frame, result))


def dataset_frame(ws: Workspace, dataset: str) -> pd.DataFrame:
    """A stored dataset's table, memoized on its fingerprint and save time (a page rerun reads no file again).

    The same object is returned to every caller: treat it as read-only (copy before changing it)."""
    info = DatasetStore(ws).info(dataset)
    key = (str(ws.root), info.name, info.fingerprint, info.created_at)
    if (hit := _FRAMES.get(key)) is not None:
        return hit
    return _FRAMES.put(key, DatasetStore(ws).load(dataset))


def load_scored_sets(ws: Workspace, names: list[str], cfg: ScoreConfig,
                     handle: ModelHandle | None = None) -> tuple[dict[str, ScoredSet], list[str]]:
    """The fully scored datasets among `names` (in that order), and the names of those not fully scored yet."""
    handle = handle or model_handle(cfg.model, cfg.backend, ws)
    sets, missing = {}, []
    for name in names:
        scored = load_scored_set(ws, name, cfg, handle)
        if scored is None:
            missing.append(name)
        else:
            sets[name] = scored
    return sets, missing




def check_segment(segment: str) -> str:
    if segment not in SEGMENTS:
        raise DataError(f"unknown segment {segment!r}; choose one of {', '.join(SEGMENTS)}")
    return segment
