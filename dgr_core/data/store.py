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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dgr_core.data.hub import load_hf
from dgr_core.data.loaders import (
    CHUNK_ROWS,
    DETECT_SAMPLE,
    BadRow,
    file_type,
    iter_records,
    nesting_guard,
    rejection,
    safe_name,
    split_bad,
)
from dgr_core.data.schema import CANONICAL_COLUMNS, ColumnMapping, DatasetInfo
from dgr_core.data.shapes import (
    _check_mapping,
    _flat,
    _is_missing,
    _original_name,
    _row,
    columns_of,
    detect_mapping,
)
from dgr_core.errors import DataError
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

DATA_FILE = "data.parquet"
META_FILE = "meta.json"
MAX_BAD_KEPT = 1000  # bad rows listed in meta.json after a keep-the-good-rows import (all are counted)


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


def arrow_table(df: pd.DataFrame) -> pa.Table:
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
    pq.write_table(arrow_table(df), sink)
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
                    description: str = "", *, keep_good: bool = False) -> DatasetInfo:
        """Import a local file (detecting its shape unless `mapping` is given), streamed chunk by chunk.

        A bad row rejects the file (DataError listing every bad row number) unless `keep_good`: then the good rows
        are saved and the bad ones listed in `info.extra["bad_rows"]` (record number and problem; the first
        MAX_BAD_KEPT) with their count in `info.extra["n_bad_rows"]`. Nothing is written when it raises."""
        path = Path(path)
        name = safe_name(name or path.name[: -len(file_type(path))], what="dataset name")
        work = self.ws.datasets / f".import-{name}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            with nesting_guard(str(path)):
                return self._install(work / DATA_FILE,
                                     _build(path, name, mapping, keep_good, work, description=description))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _install(self, data_file: Path, info: DatasetInfo) -> DatasetInfo:
        """Move a finished data.parquet into the dataset's folder (fsync + rename), then write meta.json last."""
        folder = self.ws.datasets / info.name
        folder.mkdir(parents=True, exist_ok=True)
        with open(data_file, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(data_file, folder / DATA_FILE)
        atomic_write_json(folder / META_FILE, info.to_dict())
        return info

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


# ---------------------------------------------------------------- streaming import
# A file is imported chunk by chunk: each chunk of records is mapped to canonical rows and written as its own
# Parquet part, then the parts are joined into data.parquet under one schema with the ids added. Only one chunk
# of Python objects is alive at a time, so memory does not grow with the file (benchmarks/bench_upload.py).

CANONICAL_ROW = ["prompt", "reasoning", "answer", "source", "category", "think_status"]


@dataclass
class _Parts:
    """What the chunk pass leaves for the join pass."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    columns: dict[str, None] = field(default_factory=dict)  # original columns, in order of first appearance
    id_values: list[Any] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # record number of each good row
    bad: list[BadRow] = field(default_factory=list)
    total: int = 0


def _chunk_frame(records: list[dict], mapping: ColumnMapping, stem: str) -> pd.DataFrame:
    """Canonical rows (without ids) and the original columns of records that passed `row_problem`."""
    frame = pd.DataFrame([_row(r, mapping, stem) for r in records], columns=CANONICAL_ROW)
    originals = {_original_name(c): [_flat(r.get(c)) for r in records] for c in columns_of(records)}
    return pd.concat([frame, pd.DataFrame(originals, index=frame.index)], axis=1)  # at once: 10k columns stay fast


def _write_chunk(parts: _Parts, chunk: list[tuple[int, Any]], mapping: ColumnMapping, stem: str) -> None:
    parts.total += len(chunk)
    good, bad = split_bad(chunk, mapping)
    parts.bad.extend(bad)
    if not good:
        return
    records = [r for _, r in good]
    parts.columns.update(dict.fromkeys(columns_of(records)))
    parts.numbers.extend(n for n, _ in good)
    if mapping.id:
        parts.id_values.extend(r.get(mapping.id) for r in records)
    target = parts.folder / f"part-{len(parts.files):05d}.parquet"
    pq.write_table(arrow_table(_chunk_frame(records, mapping, stem)), target)
    parts.files.append(target)


def _chunks(numbered: Iterator[tuple[int, Any]], size: int) -> Iterator[list[tuple[int, Any]]]:
    chunk: list[tuple[int, Any]] = []
    for item in numbered:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _detect(chunk: list[tuple[int, Any]], mapping: ColumnMapping | None, file: str) -> ColumnMapping:
    if mapping is not None:
        return mapping
    dicts = [r for _, r in chunk if isinstance(r, dict)]
    if not dicts:
        number, first = chunk[0]
        raise DataError(f"record is a {type(first).__name__}, expected an object with named fields", file=file,
                        record=number)
    return detect_mapping(columns_of(dicts), dicts[:DETECT_SAMPLE], file=file)


def _map_parts(path: Path, mapping: ColumnMapping | None, keep_good: bool,
               folder: Path) -> tuple[_Parts, ColumnMapping]:
    """The chunk pass: Parquet parts of canonical rows, the bad rows, and the mapping (detected on chunk 1)."""
    parse_bad: list[tuple[int, str]] | None = [] if keep_good else None
    parts, stem = _Parts(folder), path.name[: -len(file_type(path))]
    for chunk in _chunks(iter_records(path, parse_bad), CHUNK_ROWS):
        mapping = _detect(chunk, mapping, str(path))
        _write_chunk(parts, chunk, mapping, stem)
    parts.bad.extend(BadRow(n, p) for n, p in parse_bad or [])
    parts.total += len(parse_bad or [])
    parts.bad.sort(key=lambda b: b.record)
    if mapping is None:
        raise DataError("no records found", file=str(path))
    return parts, mapping


def _final_ids(parts: _Parts, mapping: ColumnMapping, stem: str) -> list[str]:
    """The id column when every good row has one and they are unique, else `<stem>-<record number - 1>`."""
    if mapping.id and parts.id_values and not any(_is_missing(v) for v in parts.id_values):
        ids = [str(v) for v in parts.id_values]
        if len(set(ids)) == len(ids):
            return ids
    return [f"{stem}-{n - 1:05d}" for n in parts.numbers]


def _unified_schema(files: list[Path], order: list[str]) -> pa.Schema:
    """One schema for every part: a column typed differently in two parts (int ids here, text there) is text."""
    types: dict[str, set[pa.DataType]] = {}
    for file in files:
        for f in pq.read_schema(file):
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    names = [*CANONICAL_ROW, *[n for n in order if n not in CANONICAL_ROW]]
    return pa.schema([(n, next(iter(types[n])) if len(types.get(n, ())) == 1 else
                       pa.string() if n in types else pa.null()) for n in names])


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v, default=str)
                     for v in column.to_pylist()], type=pa.string())


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(len(table), f.type))
        elif table.schema.field(f.name).type == f.type:
            columns.append(table[f.name])
        elif pa.types.is_string(f.type):
            columns.append(_as_text(table[f.name]))
        else:
            columns.append(table[f.name].cast(f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _join_parts(parts: _Parts, ids: list[str], target: Path) -> tuple[str, dict[str, int]]:
    """The join pass: write data.parquet (ids first) part by part; returns (fingerprint, think counts)."""
    order = [_original_name(c) for c in parts.columns]
    schema = _unified_schema(parts.files, order)
    full = pa.schema([pa.field("id", pa.string()), *schema])
    digest, start = hashlib.sha256(), 0
    counts: dict[str, int] = {}
    with pq.ParquetWriter(target, full) as writer:
        for file in parts.files:
            table = _conform(pq.read_table(file), schema)
            table = table.add_column(0, "id", pa.array(ids[start:start + len(table)], type=pa.string()))
            start += len(table)
            writer.write_table(table)
            _digest_rows(digest, table)
            for status in table["think_status"].to_pylist():
                counts[str(status)] = counts.get(str(status), 0) + 1
    return digest.hexdigest()[:16], counts


def _digest_rows(digest: Any, table: pa.Table) -> None:
    """`fingerprint`'s row lines for one part (same bytes as for the whole DataFrame)."""
    for row in zip(*(table[c].to_pylist() for c in CANONICAL_COLUMNS), strict=True):
        digest.update(json.dumps([_canonical_value(v) for v in row], ensure_ascii=False).encode("utf-8") + b"\n")


def _build(path: Path, name: str, mapping: ColumnMapping | None, keep_good: bool, work: Path, *,
           description: str) -> DatasetInfo:
    """Both passes of a streaming import into `work/data.parquet`; the DatasetInfo to install with it."""
    parts, used = _map_parts(path, mapping, keep_good, work)
    _check_mapping(used, list(parts.columns), str(path))
    if parts.bad and (not keep_good or not parts.files):
        raise rejection(parts.bad, parts.total, str(path))
    if not parts.files:
        raise DataError("no records found", file=str(path))
    ids = _final_ids(parts, used, path.name[: -len(file_type(path))])
    fp, counts = _join_parts(parts, ids, work / DATA_FILE)
    extra = ({"n_bad_rows": len(parts.bad), "bad_rows": [b.to_dict() for b in parts.bad[:MAX_BAD_KEPT]]}
             if parts.bad else {})
    return DatasetInfo(name=name, fingerprint=fp, n_rows=len(ids), origin=str(path), mapping=_mapping_dict(used),
                       created_at=datetime.now(UTC).isoformat(timespec="seconds"), description=description,
                       think_counts=counts, extra=extra)
