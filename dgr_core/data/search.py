"""Search a dataset's text fields with a literal string or a regular expression, in bounded time.

A user regex can backtrack exponentially (`(a|aa)+$` on a long field): with Python's `re` it holds the GIL and
freezes every session of the app. Here patterns run on the `regex` package, whose matcher releases the GIL
(`concurrent=True`) and stops at a timeout, under one deadline for the whole search (`SEARCH_TIMEOUT_S`), and a
pattern is at most `MAX_PATTERN_CHARS` long. A search that runs out of time raises `SearchError` saying so.

    mask = search_mask(df, r"bomb|weapon", regex=True, fields=["prompt", "answer"])
    hits = search_dataset(ws, "STAR-1", "bomb", fields=["prompt"])      # what `dgr datasets search` prints
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import regex

from dgr_core.errors import DGRError

SEARCH_FIELDS = ("prompt", "reasoning", "answer")
MAX_PATTERN_CHARS = 500
SEARCH_TIMEOUT_S = 1.0
# The matcher checks its timeout only now and then: measured, it stops 1.4-2x after the time it was given. It is
# handed this share of what is left, so the whole search ends within SEARCH_TIMEOUT_S (benchmarks/bench_regex.py).
MATCHER_SHARE = 0.45


class SearchError(DGRError):
    """A search or filter cannot be applied (bad regex, unknown field, too slow, no lengths loaded)."""


def compile_search(text: str, *, regex_mode: bool, case_sensitive: bool) -> regex.Pattern:
    """The search as a compiled pattern; SearchError naming the problem and its position for a bad regex."""
    if len(text) > MAX_PATTERN_CHARS:
        raise SearchError(f"the search is {len(text)} characters long; at most {MAX_PATTERN_CHARS} are allowed")
    flags = regex.VERSION0 | (0 if case_sensitive else regex.IGNORECASE)
    if not regex_mode:
        return regex.compile(regex.escape(text), flags)
    try:
        return regex.compile(text, flags)
    except (regex.error, RecursionError, OverflowError) as exc:
        pos = getattr(exc, "pos", None)
        where = f" at position {pos}" if pos is not None else ""
        raise SearchError(f"invalid regular expression {text!r}: {getattr(exc, 'msg', exc)}{where}") from None


def _too_slow(text: str, timeout: float) -> SearchError:
    return SearchError(f"the search {text!r} took longer than {timeout:g} s and was stopped: the pattern "
                       "backtracks too much (nested repeats like '(a+)+' do); simplify it or search a literal")


def search_mask(df: pd.DataFrame, text: str, *, regex: bool = False, case_sensitive: bool = False,
                fields: Sequence[str] = SEARCH_FIELDS, timeout: float = SEARCH_TIMEOUT_S) -> pd.Series:
    """True for rows where `text` occurs in any of `fields`; SearchError if the whole search needs more than
    `timeout` seconds (the matcher releases the GIL meanwhile, so other sessions keep running)."""
    if not text:
        return pd.Series(True, index=df.index)
    unknown = [f for f in fields if f not in df.columns]
    if unknown or not fields:
        raise SearchError(f"cannot search in {', '.join(unknown) or 'no field'}: choose among "
                          f"{', '.join(SEARCH_FIELDS)}")
    pattern = compile_search(text, regex_mode=regex, case_sensitive=case_sensitive)
    deadline = time.monotonic() + timeout
    hits = []
    for values in zip(*(df[f].tolist() for f in fields), strict=True):
        hits.append(_row_hit(pattern, values, deadline, text, timeout))
    return pd.Series(hits, index=df.index, dtype=bool)


def _row_hit(pattern: regex.Pattern, values: tuple[Any, ...], deadline: float, text: str, timeout: float) -> bool:
    for value in values:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _too_slow(text, timeout)
        try:
            if pattern.search("" if value is None else str(value), concurrent=True, timeout=left * MATCHER_SHARE):
                return True
        except TimeoutError:
            raise _too_slow(text, timeout) from None
    return False


def search_dataset(ws: Any, name: str, text: str, *, regex: bool = False, case_sensitive: bool = False,
                   fields: Sequence[str] = SEARCH_FIELDS, timeout: float = SEARCH_TIMEOUT_S) -> pd.DataFrame:
    """The rows of stored dataset `name` that match (all columns, original index kept)."""
    from dgr_core.data.store import DatasetStore

    df = DatasetStore(ws).load(name)
    return df[search_mask(df, text, regex=regex, case_sensitive=case_sensitive, fields=fields, timeout=timeout)]
