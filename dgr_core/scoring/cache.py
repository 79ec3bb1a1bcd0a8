"""Content-addressed store of scores, keyed as ARCHITECTURE.md says.

Layout (all readable without this code):

    scores/<op key>/meta.json                     operation, version, model identity, backend, dtype, settings
    scores/<op key>/chunks/<chunk id>.npz         per-token arrays (float16 log-probs, int32 ids/ranks, int8
                                                  segments) concatenated with offsets, and float32 embeddings
    scores/<op key>/chunks/<chunk id>.parquet     per-sample table; written last, so its presence = chunk complete

The op key is sha256 over canonical JSON of everything that changes the output except the sample text; each
sample's key is sha256(op key + its text hash). A chunk holds the samples scored together; re-scoring a dataset
looks every sample key up and computes only the missing ones. Writes are atomic (temp file + rename), so a killed
job leaves at most an orphan .npz that no index points at.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.workspace import atomic_write_bytes, atomic_write_json, read_json

ARRAY_FIELDS = ("token_ids", "logprobs", "ranks", "segments")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def op_key(meta: dict[str, Any]) -> str:
    return sha256(canonical_json(meta))[:24]


def sample_key(op: str, text_hash: str) -> str:
    return sha256(op + "|" + text_hash)[:24]


@dataclass
class SampleArrays:
    token_ids: np.ndarray
    logprobs: np.ndarray
    ranks: np.ndarray
    segments: np.ndarray
    embedding: np.ndarray


class ScoreStore:
    """One operation's entries: look up sample keys, add chunks, read arrays back."""

    def __init__(self, root: Path, meta: dict[str, Any]):
        self.key = op_key(meta)
        self.dir = Path(root) / self.key
        self.chunks = self.dir / "chunks"
        self.chunks.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "meta.json").is_file():
            atomic_write_json(self.dir / "meta.json", {"op_key": self.key, **meta})
        self._index: dict[str, tuple[str, int]] | None = None
        self._tables: dict[str, pd.DataFrame] = {}
        self._arrays: dict[str, dict[str, np.ndarray]] = {}

    def index(self) -> dict[str, tuple[str, int]]:
        """sample key -> (chunk id, row in chunk), built from the complete chunks."""
        if self._index is None:
            self._index = {}
            for pq in sorted(self.chunks.glob("*.parquet")):
                keys = pd.read_parquet(pq, columns=["sample_key"])["sample_key"]
                for row, key in enumerate(keys):
                    self._index[key] = (pq.stem, row)
        return self._index

    def missing(self, keys: list[str]) -> list[str]:
        idx = self.index()
        return [k for k in keys if k not in idx]

    def add_chunk(self, table: pd.DataFrame, arrays: list[SampleArrays]) -> str:
        """Write one chunk (arrays first, table last) and index it."""
        chunk_id = sha256("|".join(table["sample_key"]))[:16]
        buf = io.BytesIO()
        np.savez(buf, **_pack(arrays))
        atomic_write_bytes(self.chunks / f"{chunk_id}.npz", buf.getvalue())
        pq = io.BytesIO()
        table.reset_index(drop=True).to_parquet(pq, index=False)
        atomic_write_bytes(self.chunks / f"{chunk_id}.parquet", pq.getvalue())
        idx = self.index()
        for row, key in enumerate(table["sample_key"]):
            idx[key] = (chunk_id, row)
        return chunk_id

    def table(self, keys: list[str]) -> pd.DataFrame:
        """Per-sample rows for `keys`, in that order."""
        idx = self.index()
        parts = [self._chunk_table(idx[k][0]).iloc[idx[k][1]] for k in keys]
        return pd.DataFrame(parts).reset_index(drop=True) if parts else pd.DataFrame()

    def arrays(self, key: str) -> SampleArrays:
        chunk, row = self.index()[key]
        data = self._chunk_arrays(chunk)
        lo, hi = data["offsets"][row], data["offsets"][row + 1]
        return SampleArrays(
            token_ids=data["token_ids"][lo:hi], logprobs=data["logprobs"][lo:hi].astype(np.float32),
            ranks=data["ranks"][lo:hi], segments=data["segments"][lo:hi], embedding=data["embeddings"][row],
        )

    def embeddings(self, keys: list[str]) -> np.ndarray:
        return np.stack([self.arrays(k).embedding for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def _chunk_table(self, chunk: str) -> pd.DataFrame:
        if chunk not in self._tables:
            self._tables[chunk] = pd.read_parquet(self.chunks / f"{chunk}.parquet")
        return self._tables[chunk]

    def _chunk_arrays(self, chunk: str) -> dict[str, np.ndarray]:
        if chunk not in self._arrays:
            with np.load(self.chunks / f"{chunk}.npz", allow_pickle=False) as npz:
                self._arrays[chunk] = {k: npz[k] for k in npz.files}
        return self._arrays[chunk]


def _pack(arrays: list[SampleArrays]) -> dict[str, Any]:  # Any: np.savez's **kwds
    lengths = [len(a.logprobs) for a in arrays]
    return {
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "token_ids": np.concatenate([a.token_ids for a in arrays]).astype(np.int32),
        "logprobs": np.concatenate([a.logprobs for a in arrays]).astype(np.float16),
        "ranks": np.concatenate([a.ranks for a in arrays]).astype(np.int32),
        "segments": np.concatenate([a.segments for a in arrays]).astype(np.int8),
        "embeddings": np.stack([a.embedding for a in arrays]).astype(np.float32),
    }


def read_meta(store_dir: Path) -> dict[str, Any]:
    return read_json(Path(store_dir) / "meta.json")
