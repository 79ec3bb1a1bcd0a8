"""Read dataset files, uploads and Hugging Face datasets into canonical DataFrames.

- `read_records(path)`: raw records from .json (a list, `{"data": [...]}`, or JSON Lines under a .json name),
  .jsonl, .csv or .parquet. Every problem is a `DataError` naming the file and the line / record / byte offset.
  Nothing is ever unpickled; Parquet is read with pyarrow only.
- `load_file(path, mapping=None)`: records -> detected (or given) `ColumnMapping` -> canonical DataFrame.
- `load_upload(filename, data, uploads_dir)`: a browser upload saved under a sanitized name, with a size cap.
- `load_hf(dataset_id, split=..., config=...)`: `datasets.load_dataset` (no remote code), honouring
  HF_HUB_OFFLINE / HF_DATASETS_OFFLINE even when they were set after `datasets` was imported.

    df, mapping = load_file(Path("STAR-1.json"))      # mapping.shape == "star1"
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.data.schema import ColumnMapping
from dgr_core.data.shapes import apply_mapping, columns_of, detect_mapping
from dgr_core.errors import DataError
from dgr_core.workspace import atomic_write_bytes

SUPPORTED_EXTENSIONS = (".json", ".jsonl", ".csv", ".parquet")
MAX_UPLOAD_BYTES = 200 * 2**20
MAX_NAME_CHARS = 120
# Keys under which a JSON object commonly wraps its list of records, in order of preference.
WRAPPER_KEYS = ("data", "train", "rows", "records", "examples", "instances", "items")
DETECT_SAMPLE = 20
TRUE_VALUES = {"1", "true", "yes", "on"}


# ---------------------------------------------------------------- names


def safe_name(name: str, *, what: str = "name") -> str:
    """Basename only, characters outside [A-Za-z0-9._-] replaced by '_', no leading dots, at most 120 chars."""
    base = re.split(r"[\\/]", str(name).strip())[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    cleaned = re.sub(r"_+", "_", cleaned)
    if len(cleaned) > MAX_NAME_CHARS:
        stem, ext = os.path.splitext(cleaned)
        cleaned = stem[: MAX_NAME_CHARS - len(ext)] + ext
    if not cleaned.strip("._-"):
        raise DataError(f"'{name}' is not a usable {what}: use letters, digits, '.', '_' or '-'")
    return cleaned


def safe_filename(filename: str) -> str:
    """`safe_name` for an uploaded file that must keep a supported extension."""
    cleaned = safe_name(filename, what="file name")
    ext = os.path.splitext(cleaned)[1].lower()
    if ext not in SUPPORTED_EXTENSIONS or cleaned.lower() == ext:
        raise DataError(f"unsupported file type '{ext or 'none'}': upload one of "
                        f"{', '.join(SUPPORTED_EXTENSIONS)}", file=cleaned)
    return cleaned


# ---------------------------------------------------------------- reading records


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError("file not found", file=str(path))
    if not path.is_file():
        raise DataError("not a file", file=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    if not data.strip():
        raise DataError("file is empty", file=str(path))
    return data


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line {line}); "
                        "re-save the file as UTF-8", file=str(path)) from None


def _jsonl(text: str, path: Path) -> list[Any]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"line {number} is not valid JSON (column {exc.colno}: {exc.msg})",
                            file=str(path)) from None
    return records


def _looks_like_jsonl(text: str, exc: json.JSONDecodeError) -> bool:
    """JSON Lines saved as .json: the parser stops with 'Extra data' after a complete first line."""
    return exc.msg == "Extra data" and exc.lineno > 1 and text.lstrip().startswith("{")


def _unwrap(obj: Any, path: Path) -> list[Any]:
    """The list of records inside a JSON document."""
    if isinstance(obj, list):
        return obj
    if not isinstance(obj, dict):
        raise DataError(f"the JSON document is a {type(obj).__name__}, expected a list of objects", file=str(path))
    # Candidate wrappers: lists of objects, or a conventional key even when its list is empty.
    lists = [k for k, v in obj.items() if isinstance(v, list)
             and (k in WRAPPER_KEYS or (v and all(isinstance(x, dict) for x in v)))]
    preferred = [k for k in WRAPPER_KEYS if k in lists]
    if len(lists) == 1 or preferred:
        return obj[(preferred or lists)[0]]
    if not lists:
        return [obj]  # a single record saved as one object
    raise DataError(f"the JSON object holds several lists ({', '.join(lists)}); expected a list of objects or "
                    "{\"data\": [...]}", file=str(path))


def _json(text: str, path: Path) -> list[Any]:
    try:
        return _unwrap(json.loads(text), path)
    except json.JSONDecodeError as exc:
        if _looks_like_jsonl(text, exc):
            return _jsonl(text, path)
        raise DataError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                        file=str(path)) from None


def _csv(text: str, path: Path) -> list[Any]:
    # Everything as text, empty cells as "": ids like "007" and prompts like "NA" survive unchanged.
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        raise DataError(f"malformed CSV: {exc}", file=str(path)) from None
    return frame.to_dict("records")


def _parquet(data: bytes, path: Path) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq  # pyarrow only, to plain Python objects: nothing is ever unpickled

    try:
        return pq.read_table(pa.BufferReader(data)).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise DataError(f"not a readable Parquet file: {exc}", file=str(path)) from None


def _check_records(records: list[Any], path: Path) -> list[dict]:
    if not records:
        raise DataError("no records found", file=str(path))
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataError(f"record is a {type(record).__name__}, expected an object with named fields",
                            file=str(path), record=number)
    return records


def read_records(path: Path) -> list[dict]:
    """Raw records of a .json / .jsonl / .csv / .parquet file; DataError with file and line/record otherwise."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise DataError(f"unsupported file type '{ext or 'none'}': use one of {', '.join(SUPPORTED_EXTENSIONS)}",
                        file=str(path))
    data = _read_bytes(path)
    if ext == ".parquet":
        return _check_records(_parquet(data, path), path)
    text = _decode(data, path)
    reader = {".json": _json, ".jsonl": _jsonl, ".csv": _csv}[ext]
    return _check_records(reader(text, path), path)


def records_to_frame(records: list[dict], mapping: ColumnMapping | None, *, file: str,
                     stem: str | None = None) -> tuple[pd.DataFrame, ColumnMapping]:
    """Detect the mapping if none is given, then apply it."""
    if mapping is None:
        mapping = detect_mapping(columns_of(records), records[:DETECT_SAMPLE], file=file)
    return apply_mapping(records, mapping, file=file, stem=stem), mapping


def load_file(path: Path, mapping: ColumnMapping | None = None) -> tuple[pd.DataFrame, ColumnMapping]:
    """Canonical DataFrame and the mapping used (detected when `mapping` is None)."""
    path = Path(path)
    return records_to_frame(read_records(path), mapping, file=str(path), stem=path.stem)


# ---------------------------------------------------------------- uploads


def load_upload(filename: str, data: bytes, uploads_dir: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Save an uploaded file under a sanitized name in `uploads_dir` (atomically) and return its path."""
    name = safe_filename(filename)
    if len(data) > max_bytes:
        raise DataError(f"the upload is {len(data) / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit",
                        file=name)
    if not data.strip():
        raise DataError("file is empty", file=name)
    target = Path(uploads_dir) / name
    atomic_write_bytes(target, data)
    return target


# ---------------------------------------------------------------- Hugging Face


def _env_offline() -> bool:
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in TRUE_VALUES for f in flags)


@contextlib.contextmanager
def _offline_mode(offline: bool) -> Iterator[None]:
    """datasets and huggingface_hub read the offline flags once, at import. Re-apply them for this call so an
    environment set later (a test, a page toggle) still prevents network retries."""
    import datasets
    import huggingface_hub.constants as hub

    saved = (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE)
    if offline:
        datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _fetch_error(dataset_id: str, exc: Exception) -> DataError:
    offline = " (offline mode is on, so only the local cache was searched)" if _env_offline() else ""
    return DataError(
        f"could not fetch Hugging Face dataset '{dataset_id}'{offline}: {exc}. Check the id, split and config, "
        "and your network; HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 block downloads.", file=dataset_id)


def _pick_split(loaded: Any, split: str | None, dataset_id: str) -> tuple[Any, str]:
    """A single split out of what load_dataset returned (a DatasetDict when no split was asked for)."""
    if split is not None or not hasattr(loaded, "keys"):
        return loaded, split or "train"
    names = list(loaded.keys())
    if not names:
        raise DataError("the dataset has no splits", file=dataset_id)
    chosen = "train" if "train" in names else names[0]
    return loaded[chosen], chosen


def fetch_hf_records(dataset_id: str, *, split: str | None = None,
                     config: str | None = None) -> tuple[list[dict], str]:
    """Records of one split of a Hub dataset, and the split's name. Never runs remote code."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset_id or ""):
        raise DataError("not a Hugging Face dataset id (expected 'owner/name')", file=dataset_id or "(empty)")
    import datasets

    try:
        with _offline_mode(_env_offline()):
            loaded = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError…)
        raise _fetch_error(dataset_id, exc) from None
    chosen, split_name = _pick_split(loaded, split, dataset_id)
    return chosen.to_list(), split_name


def load_hf(dataset_id: str, *, split: str | None = None, config: str | None = None,
            mapping: ColumnMapping | None = None, local_ok: bool = True) -> tuple[pd.DataFrame, ColumnMapping]:
    """Canonical DataFrame of a Hub dataset split. For a preset (see `presets.PRESETS`) its mapping is used when
    none is given, and a split that exists as a local file is read from disk when `local_ok` (no network)."""
    from dgr_core.data.presets import PRESETS

    preset = PRESETS.get(dataset_id)
    if preset is not None:
        if mapping is None and preset.mapping is not None:
            mapping = ColumnMapping.from_dict(preset.mapping.to_dict())  # a copy: callers may edit it
        split = split or preset.default_split
        local = preset.local_path(split) if local_ok else None
        if local is not None:
            return load_file(local, mapping)
    records, split_name = fetch_hf_records(dataset_id, split=split, config=config)
    if not records:
        raise DataError(f"split '{split_name}' has no records", file=dataset_id)
    stem = dataset_id.rsplit("/", 1)[-1]
    return records_to_frame(records, mapping, file=f"{dataset_id} [{split_name}]", stem=stem)
