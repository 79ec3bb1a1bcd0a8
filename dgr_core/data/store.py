"""The dataset store: canonical datasets kept in the workspace as files a person can open.

Each dataset is a folder `<workspace>/datasets/<name>/` with `data.parquet` (the canonical table) and `meta.json`
(a `DatasetInfo`). Both are written atomically (temp file + rename), Parquet first and `meta.json` last, so a
dataset is listed only once it is complete and a failed import never touches what is already there.

The fingerprint is a sha256 over the canonical columns in row order (16 hex chars): it changes when any id,
prompt, reasoning, answer, source or category changes, and stays the same across re-saves; score caches key on it.

    store = DatasetStore(Workspace.default())
    info = store.import_file(Path("STAR-1.json"))
    df = store.load(info.name)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dgr_core.data.loaders import load_file, load_hf, safe_name
from dgr_core.data.schema import CANONICAL_COLUMNS, ColumnMapping, DatasetInfo
from dgr_core.errors import DataError
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

DATA_FILE = "data.parquet"
META_FILE = "meta.json"


def _canonical_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str | int | bool) else str(value)


def fingerprint(df: pd.DataFrame) -> str:
    """sha256 (first 16 hex chars) over the canonical columns, row by row, in order."""
    missing = [c for c in CANONICAL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"the table lacks canonical column(s) {', '.join(missing)}")
    digest = hashlib.sha256()
    for row in zip(*(df[c].tolist() for c in CANONICAL_COLUMNS), strict=True):
        line = json.dumps([_canonical_value(v) for v in row], ensure_ascii=False)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def _arrow_safe(df: pd.DataFrame) -> pa.Table:
    """Arrow table of df; an original column mixing types (e.g. int and str ids) is stored as text."""
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        fixed = df.copy()
        for column in fixed.columns:
            try:
                pa.array(fixed[column], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                fixed[column] = [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str)
                                 for v in fixed[column]]
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(_arrow_safe(df), sink)
    return sink.getvalue().to_pybytes()


def _mapping_dict(mapping: ColumnMapping | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(mapping, ColumnMapping):
        return mapping.to_dict()
    return dict(mapping or {})


class DatasetStore:
    """Save, load, list and delete canonical datasets in one workspace."""

    def __init__(self, ws: Workspace):
        self.ws = ws

    def _dir(self, name: str) -> Path:
        return self.ws.datasets / safe_name(name, what="dataset name")

    def exists(self, name: str) -> bool:
        try:
            folder = self._dir(name)
        except DataError:  # a name that cannot be sanitized names no dataset
            return False
        return (folder / META_FILE).is_file() and (folder / DATA_FILE).is_file()

    def save(self, name: str, df: pd.DataFrame, *, origin: str,
             mapping: ColumnMapping | dict[str, Any] | None = None, parent: str | None = None,
             description: str = "", extra: dict[str, Any] | None = None) -> DatasetInfo:
        """Write (or replace) a dataset; returns its metadata."""
        name = safe_name(name, what="dataset name")
        df = df.reset_index(drop=True)
        counts = df["think_status"].value_counts().to_dict() if "think_status" in df.columns else {}
        info = DatasetInfo(
            name=name, fingerprint=fingerprint(df), n_rows=len(df), origin=origin,
            mapping=_mapping_dict(mapping), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            parent=parent, description=description, think_counts={str(k): int(v) for k, v in counts.items()},
            extra=dict(extra or {}))
        folder = self.ws.datasets / name
        atomic_write_bytes(folder / DATA_FILE, _parquet_bytes(df))
        atomic_write_json(folder / META_FILE, info.to_dict())  # last: the dataset is complete from here on
        return info

    def info(self, name: str) -> DatasetInfo:
        """Metadata of a stored dataset; DataError if it is unknown or incomplete."""
        if not self.exists(name):
            raise DataError(f"no dataset named '{name}' in {self.ws.datasets}")
        try:
            return DatasetInfo.from_dict(read_json(self._dir(name) / META_FILE))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"unreadable metadata: {exc}", file=str(self._dir(name) / META_FILE)) from None

    def load(self, name: str) -> pd.DataFrame:
        """The canonical table of a stored dataset."""
        if not self.exists(name):
            raise DataError(f"no dataset named '{name}' in {self.ws.datasets}")
        path = self._dir(name) / DATA_FILE
        try:
            return pq.read_table(path).to_pandas()
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise DataError(f"unreadable dataset file: {exc}", file=str(path)) from None

    def list(self) -> list[DatasetInfo]:
        """Every complete, readable dataset, by name; broken folders are skipped."""
        infos = []
        for folder in sorted(self.ws.datasets.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                infos.append(self.info(folder.name))
            except (DataError, OSError, ValueError, TypeError):
                continue
        return infos

    def delete(self, name: str) -> None:
        """Remove a dataset. The folder is renamed away first so it vanishes from listings at once."""
        folder = self._dir(name)
        if not folder.is_dir():
            raise DataError(f"no dataset named '{name}' in {self.ws.datasets}")
        doomed = folder.with_name(f".deleting-{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def import_file(self, path: Path, name: str | None = None, mapping: ColumnMapping | None = None,
                    description: str = "") -> DatasetInfo:
        """Load a local file (detecting its shape unless `mapping` is given) and save it."""
        path = Path(path)
        df, used = load_file(path, mapping)  # raises before anything is written
        return self.save(name or path.stem, df, origin=str(path), mapping=used, description=description)

    def import_hf(self, dataset_id: str, *, name: str | None = None, split: str | None = None,
                  config: str | None = None, mapping: ColumnMapping | None = None,
                  description: str = "") -> DatasetInfo:
        """Load a Hugging Face dataset split (preset mapping if known) and save it."""
        from dgr_core.data.presets import PRESETS

        preset = PRESETS.get(dataset_id)
        split = split or (preset.default_split if preset else None)
        df, used = load_hf(dataset_id, split=split, config=config, mapping=mapping)
        default_name = dataset_id.rsplit("/", 1)[-1] + (f"-{split}" if split else "")
        extra = {"hf_id": dataset_id, "split": split, "config": config}
        return self.save(name or default_name, df, origin=f"hf:{dataset_id}", mapping=used,
                         description=description or (preset.description if preset else ""), extra=extra)
