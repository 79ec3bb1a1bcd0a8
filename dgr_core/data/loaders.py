"""Read dataset files and uploads into canonical DataFrames (Hugging Face datasets: `dgr_core.data.hub`).

- `read_records(path)`: raw records from .json (a list, `{"data": [...]}`, or JSON Lines under a .json name),
  .jsonl, .csv or .parquet. Every problem is a `DataError` naming the file and the line / record / byte offset.
  Nothing is ever unpickled; Parquet is read with pyarrow only.
- `load_file(path, mapping=None)`: records -> detected (or given) `ColumnMapping` -> canonical DataFrame.
- `load_upload(filename, data, uploads_dir)`: a browser upload saved under a sanitized name, with a size cap.
- `hub.load_hf(dataset_id, split=..., config=...)` (dgr_core.data.hub): `datasets.load_dataset` (no remote
  code), honouring HF_HUB_OFFLINE / HF_DATASETS_OFFLINE even when they were set after `datasets` was imported.

    df, mapping = load_file(Path("STAR-1.json"))      # mapping.shape == "star1"
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from dgr_core.data.schema import ColumnMapping
from dgr_core.data.shapes import _check_mapping, _row, apply_mapping, columns_of, detect_mapping
from dgr_core.errors import DataError

SUPPORTED_EXTENSIONS = (".json", ".jsonl", ".csv", ".parquet", ".json.gz", ".jsonl.gz", ".csv.gz")
CHUNK_ROWS = 2000  # records per chunk when a file is streamed
MAX_LISTED = 20  # bad rows named in a rejection message (all are counted)
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
    try:
        ext = file_type(cleaned)
    except DataError:
        ext = os.path.splitext(cleaned)[1].lower()
        raise DataError(f"unsupported file type '{ext or 'none'}': upload one of "
                        f"{', '.join(SUPPORTED_EXTENSIONS)}", file=cleaned) from None
    if cleaned.lower() == ext:
        raise DataError(f"'{filename}' has no name before its extension", file=cleaned)
    return cleaned


# ---------------------------------------------------------------- reading records
# Files are read as streams: JSON Lines and CSV a line / a chunk at a time, Parquet a record batch at a time, and
# `.gz` files are decompressed on the fly. Only a plain JSON document (one value) must be parsed whole.


def file_type(path: Path | str) -> str:
    """The supported extension a name ends with ('.jsonl.gz', '.csv', …); DataError for anything else."""
    lower = str(path).lower()
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return ext
    ext = os.path.splitext(lower)[1]
    raise DataError(f"unsupported file type '{ext or 'none'}': use one of {', '.join(SUPPORTED_EXTENSIONS)}",
                    file=str(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", file=str(path))
    if not path.is_file():  # a folder, device, FIFO or socket: never opened
        raise DataError("not a file", file=str(path))
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    if size == 0:
        raise DataError("file is empty", file=str(path))


@contextlib.contextmanager
def _binary(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, gunzipped on the fly for '.gz'; a corrupt or cut gzip stream is a DataError."""
    try:
        fh: IO[bytes] = gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")  # type: ignore[assignment]
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    try:
        with fh:
            yield fh
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"not a readable gzip file (truncated or corrupt: {exc})", file=str(path)) from None


def _decode_line(raw: bytes, offset: int, number: int, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig" if offset == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        at = offset + exc.start
        raise DataError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {at} (line {number}); "
                        "re-save the file as UTF-8", file=str(path)) from None


def _parse_json(text: str) -> Any:
    """json.loads with a deeply nested document reported as a ValueError (not a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read (thousands of levels of lists / objects)") from None


def _json_lines(path: Path, bad: list[tuple[int, str]] | None) -> Iterator[tuple[int, Any]]:
    """(record number, value) of each non-blank line. A line that is not JSON is a DataError naming it, or, when
    `bad` is a list, is appended there as (record number, problem) and skipped."""
    number = offset = 0
    with _binary(path) as fh:
        for line_number, raw in enumerate(fh, start=1):
            text = _decode_line(raw, offset, line_number, path)
            offset += len(raw)
            if not text.strip():
                continue
            number += 1
            try:
                yield number, _parse_json(text)
            except ValueError as exc:
                problem = (f"line {line_number} is not valid JSON (column {exc.colno}: {exc.msg})"
                           if isinstance(exc, json.JSONDecodeError) else f"line {line_number}: {exc}")
                if bad is None:
                    raise DataError(problem, file=str(path)) from None
                bad.append((number, problem))


def _read_text(path: Path) -> str:
    with _binary(path) as fh:
        data = fh.read()
    if not data.strip():
        raise DataError("file is empty", file=str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line {line}); "
                        "re-save the file as UTF-8", file=str(path)) from None


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
    raise DataError(f"the JSON object holds several lists ({', '.join(map(str, lists))}); expected a list of "
                    "objects or {\"data\": [...]}", file=str(path))


def _json(path: Path, bad: list[tuple[int, str]] | None) -> Iterator[tuple[int, Any]]:
    text = _read_text(path)
    try:
        records = _unwrap(_parse_json(text), path)
    except json.JSONDecodeError as exc:
        if _looks_like_jsonl(text, exc):
            del text
            yield from _json_lines(path, bad)
            return
        raise DataError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                        file=str(path)) from None
    except ValueError as exc:
        raise DataError(str(exc), file=str(path)) from None
    del text
    yield from enumerate(records, start=1)


def _csv(path: Path, bad: list[tuple[int, str]] | None) -> Iterator[tuple[int, Any]]:
    # Everything as text, empty cells as "": ids like "007" and prompts like "NA" survive unchanged.
    number = 0
    with _binary(path) as fh:
        try:
            text = io.TextIOWrapper(fh, encoding="utf-8-sig")
            for chunk in pd.read_csv(text, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS):
                for record in chunk.to_dict("records"):
                    number += 1
                    yield number, record
        except pd.errors.EmptyDataError:
            raise DataError("file is empty", file=str(path)) from None
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text ({exc.reason}); re-save the file as UTF-8", file=str(path)) from None
        except (pd.errors.ParserError, csv.Error, ValueError) as exc:
            raise DataError(f"malformed CSV: {brief_error(exc)}", file=str(path)) from None


def _parquet(path: Path, bad: list[tuple[int, str]] | None) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq  # pyarrow only, to plain Python objects: nothing is ever unpickled

    number = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise DataError(f"not a readable Parquet file: {brief_error(exc)}", file=str(path)) from None


READERS = {".json": _json, ".jsonl": _json_lines, ".csv": _csv, ".parquet": _parquet,
           ".json.gz": _json, ".jsonl.gz": _json_lines, ".csv.gz": _csv}


def brief_error(exc: BaseException, limit: int = 200) -> str:
    """A library's error message, shortened: some quote long stretches of the file they failed on."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"


def iter_records(path: Path, bad: list[tuple[int, str]] | None = None) -> Iterator[tuple[int, Any]]:
    """(record number, raw record) of a supported file, streamed. Unreadable files raise DataError naming the
    file and the line / record / byte offset; with `bad` given, unparseable JSON lines are listed there instead."""
    path = Path(path)
    kind = file_type(path)
    _check_file(path)
    yield from READERS[kind](path, bad)


def read_records(path: Path) -> list[dict]:
    """Raw records of a .json / .jsonl / .csv / .parquet file (or their .gz); DataError with file and
    line/record otherwise."""
    path = Path(path)
    records = []
    for number, record in iter_records(path):
        if not isinstance(record, dict):
            raise DataError(f"record is a {type(record).__name__}, expected an object with named fields",
                            file=str(path), record=number)
        records.append(record)
    if not records:
        raise DataError("no records found", file=str(path))
    return records


# ---------------------------------------------------------------- bad rows


@dataclass
class BadRow:
    """A record that cannot become a canonical row: its 1-based number in the file and why."""

    record: int
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "problem": self.problem}


def row_problem(record: Any, mapping: ColumnMapping) -> str | None:
    """Why `record` cannot be mapped (None when it can): the check `apply_mapping` makes, one record at a time."""
    if not isinstance(record, dict):
        return f"record is a {type(record).__name__}, expected an object with named fields"
    try:
        _row(record, mapping, "")
    except (ValueError, TypeError, RecursionError) as exc:
        return str(exc) if not isinstance(exc, RecursionError) else "nested too deeply to read"
    return None


def rejection(bad: list[BadRow], total: int, file: str) -> DataError:
    """The error for a file with bad rows: every row number (the first MAX_LISTED with their problem)."""
    hint = " (or choose 'keep the good rows' to import the others and list these)"
    if len(bad) == 1:
        return DataError(bad[0].problem + hint, file=file, record=bad[0].record)
    listed = "; ".join(f"record {b.record}: {b.problem}" for b in bad[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return DataError(f"{len(bad)} of {total} records are unusable: {listed}{more}{hint}", file=file)


def split_bad(numbered: list[tuple[int, Any]], mapping: ColumnMapping) -> tuple[list[tuple[int, dict]], list[BadRow]]:
    """(good (number, record) pairs, bad rows) under `mapping`."""
    good, bad = [], []
    for number, record in numbered:
        problem = row_problem(record, mapping)
        if problem is None:
            good.append((number, record))
        else:
            bad.append(BadRow(number, problem))
    return good, bad


@contextlib.contextmanager
def nesting_guard(file: str) -> Iterator[None]:
    """A value nested thousands of levels deep (a chat column holding '[[[[…' as text, parsed while mapping) is a
    DataError, not a RecursionError."""
    try:
        yield
    except RecursionError:
        raise DataError("a value is nested too deeply to read (thousands of levels of lists / objects)",
                        file=file) from None


def records_to_frame(records: list[dict], mapping: ColumnMapping | None, *, file: str,
                     stem: str | None = None) -> tuple[pd.DataFrame, ColumnMapping]:
    """Detect the mapping if none is given, then apply it."""
    with nesting_guard(file):
        if mapping is None:
            mapping = detect_mapping(columns_of(records), records[:DETECT_SAMPLE], file=file)
        return apply_mapping(records, mapping, file=file, stem=stem), mapping


def load_file_report(path: Path, mapping: ColumnMapping | None = None, *,
                     keep_good: bool = False) -> tuple[pd.DataFrame, ColumnMapping, list[BadRow]]:
    """Canonical DataFrame, the mapping used and the bad rows. By default any bad row rejects the file with a
    DataError listing the bad row numbers; `keep_good=True` keeps the good rows and returns the bad ones."""
    with nesting_guard(str(path)):
        return _load_file_report(Path(path), mapping, keep_good)


def _load_file_report(path: Path, mapping: ColumnMapping | None,
                      keep_good: bool) -> tuple[pd.DataFrame, ColumnMapping, list[BadRow]]:
    parse_bad: list[tuple[int, str]] | None = [] if keep_good else None
    numbered = list(iter_records(path, parse_bad))
    if not numbered and not parse_bad:
        raise DataError("no records found", file=str(path))
    dicts = [r for _, r in numbered if isinstance(r, dict)]
    if mapping is None:
        if not dicts:
            number, first = numbered[0] if numbered else (1, None)
            raise DataError(f"record is a {type(first).__name__}, expected an object with named fields",
                            file=str(path), record=number)
        mapping = detect_mapping(columns_of(dicts), dicts[:DETECT_SAMPLE], file=str(path))
    _check_mapping(mapping, columns_of(dicts), str(path))  # a wrong mapping is the file's problem, not a row's
    good, bad = split_bad(numbered, mapping)
    bad = sorted(bad + [BadRow(n, p) for n, p in (parse_bad or [])], key=lambda b: b.record)
    if bad and not keep_good:
        raise rejection(bad, len(numbered), str(path))
    if not good:
        raise rejection(bad, len(numbered) + len(parse_bad or []), str(path)) if bad else \
            DataError("no records found", file=str(path))
    stem = path.name[: -len(file_type(path))]
    frame = apply_mapping([r for _, r in good], mapping, file=str(path), stem=stem)
    if bad and frame["id"].tolist() == [f"{stem}-{i:05d}" for i in range(len(good))]:
        frame["id"] = [f"{stem}-{n - 1:05d}" for n, _ in good]  # generated ids keep the record's place in the file
    return frame, mapping, bad


def load_file(path: Path, mapping: ColumnMapping | None = None) -> tuple[pd.DataFrame, ColumnMapping]:
    """Canonical DataFrame and the mapping used (detected when `mapping` is None)."""
    frame, used, _ = load_file_report(path, mapping)
    return frame, used


# ---------------------------------------------------------------- uploads


def load_upload(filename: str, data: bytes | IO[bytes], uploads_dir: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Save an uploaded file under a sanitized name in `uploads_dir` and return its path. `data` is bytes or a
    binary file object (copied in blocks). The file appears atomically and never replaces another upload: a second
    upload of the same name (another tab, another user) gets '-2', '-3', … before its extension."""
    name = safe_filename(filename)
    size = len(data) if isinstance(data, bytes | bytearray) else _stream_size(data)
    if size > max_bytes:
        raise DataError(f"the upload is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit",
                        file=name)
    if size == 0:
        raise DataError("file is empty", file=name)
    folder = Path(uploads_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes | bytearray):
                fh.write(data)
            else:
                data.seek(0)
                shutil.copyfileobj(data, fh, 2**20)
            fh.flush()
            os.fsync(fh.fileno())
        return _link_unique(Path(tmp), folder, name)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _stream_size(fh: IO[bytes]) -> int:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    return size


def _link_unique(tmp: Path, folder: Path, name: str) -> Path:
    """Hard-link `tmp` to the first free name among name, name-2, name-3, … (link fails if the name exists, so
    two concurrent uploads can never take the same one)."""
    ext = file_type(name)
    stem = name[: -len(ext)]
    for n in range(1, 10_000):
        target = folder / (name if n == 1 else f"{stem}-{n}{ext}")
        try:
            os.link(tmp, target)
            return target
        except FileExistsError:
            continue
    raise DataError("too many uploads of this name: clear the uploads folder", file=name)
