"""What the Datasets page shows about a dataset, computed without Streamlit: lengths in target-model tokens (cached
on disk), summaries, label counts, and the browser's search / filter / sort, all pure pandas.

Lengths count each field's own text (prompt, reasoning, answer; `response` = reasoning + answer) with the target
model's tokenizer, with no chat template and no think markers: they say how long the data is for *that* model,
which is what a `max_length` or a token budget is about. They are cached per (dataset fingerprint, tokenizer hash)
as `<workspace>/stats/token_lengths/<key>.parquet` with a readable `<key>.json` beside it, so a dataset is
tokenized once per tokenizer and a changed dataset (new fingerprint) is never served stale lengths.

    tok = load_tokenizer(ModelSpec("demo"), "hf", ws)          # tokenizer only, never the model
    lengths = dataset_lengths(ws, "STAR-1", tok)               # cached
    table = with_lengths(DatasetStore(ws).load("STAR-1"), lengths)
    view = browse(table, BrowseQuery(text=r"bomb|weapon", regex=True, has_reasoning=True,
                                     sort_by="response_tokens", descending=True))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.config import Config
from dgr_core.data import search
from dgr_core.data.schema import THINK_CLOSED, THINK_EMPTY, THINK_MISSING, THINK_UNCLOSED, DatasetInfo
from dgr_core.models.loading import ModelSpec
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json

LENGTHS_OPERATION = "token_lengths"
LENGTHS_VERSION = 1
SEGMENTS = ("prompt", "reasoning", "answer")
RESPONSE = "response"  # reasoning + answer: what SFT trains on
LENGTH_COLUMNS = [f"{s}_tokens" for s in (*SEGMENTS, RESPONSE)]
SEARCH_FIELDS = ("prompt", "reasoning", "answer")
LABEL_SEP = "; "  # how `shapes.normalize_category` joins multi-label categories
BATCH = 1024  # texts per tokenizer call: bounded memory on large datasets

THINK_STATUS_HELP = {
    THINK_CLOSED: "reasoning found in a closed <think>…</think> block (or s1 think/answer markers)",
    THINK_UNCLOSED: "an opening think marker with no closing one: all text after it is reasoning, the answer is "
                    "empty",
    THINK_MISSING: "no think markers: the whole response is the answer, the reasoning is empty",
    THINK_EMPTY: "think markers with nothing inside (e.g. '<think>\\n\\n</think>')",
}


# A browser query that cannot run (bad or too slow regex, unknown column, no lengths): one type for both modules.
SearchError = search.SearchError


# ---------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class TokenizerRef:
    """A tokenizer and what identifies it in cache keys."""

    tokenizer: Any
    hash: str
    name: str


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """`loading.tokenizer_hash` for real tokenizers; the fake backend's tokenizer (rule-based, no vocabulary
    file) is identified by its class."""
    from dgr_core.backends.fake import FakeTokenizer

    if isinstance(tokenizer, FakeTokenizer):
        return "fake-v1"
    from dgr_core.models.loading import tokenizer_hash

    return tokenizer_hash(tokenizer)


def load_tokenizer(spec: ModelSpec, backend: str, ws: Workspace | None = None) -> TokenizerRef:
    """The target model's tokenizer alone (the weights are never loaded). ModelLoadError if it cannot be found."""
    from dgr_core.backends.base import describe_model, uses_weight_files

    tok = describe_model(spec, backend, ws).tokenizer  # the backend's own describer: no weights, no identity hash
    return TokenizerRef(tok, tokenizer_fingerprint(tok), spec.ref if uses_weight_files(backend) else backend)


# ---------------------------------------------------------------- lengths


def count_tokens(texts: list[str], tokenizer: Any) -> list[int]:
    """Tokens per text, without special tokens. Fast (Rust) tokenizers get whole batches; others one text a call."""
    texts = ["" if t is None else str(t) for t in texts]
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) if t else 0 for t in texts]
    counts: list[int] = []
    for start in range(0, len(texts), BATCH):
        ids = tokenizer(texts[start:start + BATCH], add_special_tokens=False)["input_ids"]
        counts.extend(len(x) for x in ids)
    return counts


def token_lengths(df: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """`id` and `<segment>_tokens` per row (row order and index of `df`); `response_tokens` = reasoning + answer."""
    out = pd.DataFrame({"id": df["id"].astype(str).to_numpy()}, index=df.index)
    for segment in SEGMENTS:
        out[f"{segment}_tokens"] = count_tokens(df[segment].tolist(), tokenizer)
    out["response_tokens"] = out["reasoning_tokens"] + out["answer_tokens"]
    return out


def lengths_meta(fingerprint: str, tokenizer_hash: str) -> dict[str, Any]:
    return {"operation": LENGTHS_OPERATION, "version": LENGTHS_VERSION, "fingerprint": fingerprint,
            "tokenizer_hash": tokenizer_hash}


def lengths_path(ws: Workspace, fingerprint: str, tokenizer_hash: str) -> Path:
    from dgr_core.scoring.cache import op_key

    return Path(ws.root) / "stats" / "token_lengths" / f"{op_key(lengths_meta(fingerprint, tokenizer_hash))}.parquet"


def _read_lengths(path: Path, df: pd.DataFrame) -> pd.DataFrame | None:
    """The cached lengths if present, readable and row-for-row the same ids; None otherwise (recompute)."""
    if not path.is_file():
        return None
    try:
        cached = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - a broken cache file is recomputed, never fatal
        return None
    ok = list(cached.columns) == ["id", *LENGTH_COLUMNS] and cached["id"].tolist() == df["id"].astype(str).tolist()
    return cached.set_axis(df.index) if ok else None


def cached_token_lengths(ws: Workspace, df: pd.DataFrame, fingerprint: str, tok: TokenizerRef,
                         dataset: str = "") -> pd.DataFrame:
    """`token_lengths(df, tok.tokenizer)`, read from the workspace cache when this dataset version was already
    tokenized with this tokenizer; written there (Parquet, then its JSON meta) otherwise."""
    path = lengths_path(ws, fingerprint, tok.hash)
    cached = _read_lengths(path, df)
    if cached is not None:
        return cached
    lengths = token_lengths(df, tok.tokenizer)
    atomic_write_bytes(path, lengths.reset_index(drop=True).to_parquet(index=False))
    meta = {**lengths_meta(fingerprint, tok.hash), "dataset": dataset, "tokenizer": tok.name, "n_rows": len(df),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_json(path.with_suffix(".json"), meta)
    return lengths


def dataset_lengths(ws: Workspace, name: str, tok: TokenizerRef) -> pd.DataFrame:
    """Cached token lengths of a stored dataset."""
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    return cached_token_lengths(ws, store.load(name), store.info(name).fingerprint, tok, dataset=name)


def with_lengths(df: pd.DataFrame, lengths: pd.DataFrame | None) -> pd.DataFrame:
    """`df` with the length columns added (row by row; `lengths` must come from this very table)."""
    if lengths is None:
        return df
    if len(lengths) != len(df):
        raise SearchError(f"the lengths have {len(lengths)} rows but the dataset has {len(df)}")
    out = df.copy()
    for column in LENGTH_COLUMNS:
        out[column] = lengths[column].to_numpy()
    return out


# ---------------------------------------------------------------- summaries


def length_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per segment: samples, empty ones, mean, median, p90, max and total tokens."""
    rows = []
    for column in LENGTH_COLUMNS:
        if column not in table.columns:
            continue
        values = table[column].astype(float)
        rows.append({"segment": column.removesuffix("_tokens"), "samples": len(values),
                     "empty": int((values == 0).sum()), "mean": values.mean(), "median": values.median(),
                     "p90": values.quantile(0.9), "max": values.max(), "total": int(values.sum())})
    return pd.DataFrame(rows, columns=["segment", "samples", "empty", "mean", "median", "p90", "max", "total"])


def lengths_long(table: pd.DataFrame, segments: tuple[str, ...] = SEGMENTS) -> pd.DataFrame:
    """Long form for histograms: one row per (sample, segment) with its `tokens`."""
    columns = {f"{s}_tokens": s for s in segments if f"{s}_tokens" in table.columns}
    long = table[["id", *columns]].melt(id_vars="id", var_name="segment", value_name="tokens")
    long["segment"] = long["segment"].map(columns)
    return long


def split_labels(value: Any) -> list[str]:
    """Labels of one cell: multi-label categories are joined with '; ' on import."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return [part.strip() for part in str(value).split(LABEL_SEP) if part.strip()]


def label_options(series: pd.Series) -> list[str]:
    """Every distinct label of a column, sorted."""
    return sorted({label for value in series for label in split_labels(value)})


def label_counts(series: pd.Series) -> pd.DataFrame:
    """`label`, `count` (a row counts once for each of its labels; rows without one count as '(none)')."""
    labels = [split_labels(value) or ["(none)"] for value in series]
    counts = pd.Series([label for row in labels for label in row], dtype=object).value_counts()
    return pd.DataFrame({"label": counts.index.astype(str), "count": counts.to_numpy()})


def datasets_table(infos: list[DatasetInfo]) -> pd.DataFrame:
    """The dataset list: name, rows, fingerprint, origin, a column per think status, parent, created."""
    rows = []
    for info in infos:
        row = {"name": info.name, "rows": info.n_rows, "fingerprint": info.fingerprint, "origin": info.origin}
        row.update({f"think {s}": int(info.think_counts.get(s, 0)) for s in THINK_STATUS_HELP})
        row.update({"parent": info.parent or "", "created": info.created_at, "description": info.description})
        rows.append(row)
    columns = ["name", "rows", "fingerprint", "origin", *(f"think {s}" for s in THINK_STATUS_HELP), "parent",
               "created", "description"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- browser


@dataclass
class BrowseQuery(Config):
    """What the browser shows: a text or regex search, filters, and an order. Empty fields filter nothing."""

    text: str = ""  # searched in `fields`
    regex: bool = False  # `text` is a Python regular expression
    case_sensitive: bool = False
    fields: list[str] = field(default_factory=lambda: list(SEARCH_FIELDS))
    sources: list[str] = field(default_factory=list)  # keep rows whose source is one of these
    categories: list[str] = field(default_factory=list)  # keep rows with at least one of these labels
    length_column: str = "response_tokens"  # which length the bounds apply to
    min_tokens: int | None = None
    max_tokens: int | None = None
    has_reasoning: bool | None = None  # True: non-empty reasoning only; False: empty only; None: both
    think_statuses: list[str] = field(default_factory=list)
    sort_by: str = ""  # a column; "" keeps the dataset's order
    descending: bool = False


def search_mask(df: pd.DataFrame, text: str, *, regex: bool = False, case_sensitive: bool = False,
                fields: list[str] | tuple[str, ...] = SEARCH_FIELDS) -> pd.Series:
    """True for rows where `text` occurs in any of `fields`, in bounded time (see `dgr_core.data.search`)."""
    return search.search_mask(df, text, regex=regex, case_sensitive=case_sensitive, fields=fields)


def _in_labels(series: pd.Series, wanted: list[str]) -> pd.Series:
    keep = set(wanted)
    return series.map(lambda v: bool(keep.intersection(split_labels(v)))).astype(bool)


def _length_mask(df: pd.DataFrame, q: BrowseQuery) -> pd.Series:
    if q.min_tokens is None and q.max_tokens is None:
        return pd.Series(True, index=df.index)
    if q.length_column not in df.columns:
        raise SearchError(f"no token lengths ('{q.length_column}') for this dataset: load the target model's "
                          "tokenizer first, or clear the length range")
    values = df[q.length_column]
    lo = values >= q.min_tokens if q.min_tokens is not None else True
    hi = values <= q.max_tokens if q.max_tokens is not None else True
    return pd.Series(lo & hi, index=df.index, dtype=bool)


def filter_mask(df: pd.DataFrame, q: BrowseQuery) -> pd.Series:
    """Rows passing every filter of `q` (search included)."""
    mask = search_mask(df, q.text, regex=q.regex, case_sensitive=q.case_sensitive, fields=q.fields)
    if q.sources:
        mask &= df["source"].astype(str).isin(q.sources)
    if q.categories:
        mask &= _in_labels(df["category"], q.categories)
    if q.has_reasoning is not None:
        mask &= (df["reasoning"].fillna("").astype(str).str.strip() != "") == q.has_reasoning
    if q.think_statuses and "think_status" in df.columns:
        mask &= df["think_status"].isin(q.think_statuses)
    return mask & _length_mask(df, q)


def sort_frame(df: pd.DataFrame, by: str, descending: bool = False) -> pd.DataFrame:
    """Stable sort on one column (missing values last); "" keeps the order."""
    if not by:
        return df
    if by not in df.columns:
        raise SearchError(f"cannot sort by '{by}': no such column")
    return df.sort_values(by, ascending=not descending, kind="stable", na_position="last")


def browse(df: pd.DataFrame, q: BrowseQuery) -> pd.DataFrame:
    """The rows `q` selects, in `q`'s order (the original index is kept, so a row can be found again)."""
    return sort_frame(df[filter_mask(df, q)], q.sort_by, q.descending)
