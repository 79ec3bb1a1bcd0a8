"""Search a dataset's text fields with a literal string or a regular expression, in bounded time.

A user regex can backtrack exponentially (`(a|aa)+$` on a long field): with Python's `re` it holds the GIL and
freezes every session of the app. Here patterns run on the `regex` package, whose matcher releases the GIL
(`concurrent=True`) and stops at a timeout, under one deadline for the whole search (`SEARCH_TIMEOUT_S`), and a
pattern is at most `MAX_PATTERN_CHARS` long. A search that runs out of time raises `SearchError` saying so.

    mask = search_mask(df, r"bomb|weapon", regex=True, fields=["prompt", "answer"])
    hits = search_dataset(ws, "STAR-1", "bomb", fields=["prompt"])      # what `dgr datasets search` prints
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import regex

from dgr_core.errors import DGRError
from dgr_core.workspace import Workspace

SEARCH_FIELDS = ("prompt", "reasoning", "answer")
MAX_PATTERN_CHARS = 500
SEARCH_TIMEOUT_S = 1.0
# The matcher checks its timeout only now and then: measured, it stops 1.4-2x (more under load) after the time it
# was given. It gets this share of what is left: a stopped helper thread ends soon after the deadline (its CPU time
# after that is bounded, and it never holds the GIL), while the search keeps most of its budget. The
# caller never waits past the deadline in any case (benchmarks/bench_regex.py).
MATCHER_SHARE = 0.8
# The caller stops waiting a little before the limit: waking up on a busy machine takes tens of milliseconds.
DEADLINE_SHARE = 0.9


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
    `timeout` seconds. The matching runs in a helper thread that releases the GIL (other sessions keep running);
    the caller stops waiting at the deadline even if the matcher overshoots its own timeout (it does, under load),
    and the helper gives up at its next check."""
    if not text:
        return pd.Series(True, index=df.index)
    unknown = [f for f in fields if f not in df.columns]
    if unknown or not fields:
        raise SearchError(f"cannot search in {', '.join(unknown) or 'no field'}: choose among "
                          f"{', '.join(SEARCH_FIELDS)}")
    pattern = compile_search(text, regex_mode=regex, case_sensitive=case_sensitive)
    rows = list(zip(*(df[f].tolist() for f in fields), strict=True))
    deadline = time.monotonic() + timeout * DEADLINE_SHARE
    outcome: dict[str, Any] = {}
    helper = threading.Thread(target=_match_rows, args=(pattern, rows, deadline, outcome), daemon=True,
                              name="dgr-search")
    helper.start()
    helper.join(max(0.0, deadline - time.monotonic()))
    if helper.is_alive() or outcome.get("timed_out"):
        outcome["stop"] = True  # the helper stops at its next check (its own matcher timeout bounds that)
        raise _too_slow(text, timeout)
    return pd.Series(outcome["hits"], index=df.index, dtype=bool)


def _match_rows(pattern: regex.Pattern, rows: list[tuple[Any, ...]], deadline: float,
                outcome: dict[str, Any]) -> None:
    hits = []
    try:
        for values in rows:
            if outcome.get("stop"):
                return
            hits.append(_row_hit(pattern, values, deadline))
    except TimeoutError:
        outcome["timed_out"] = True
        return
    outcome["hits"] = hits


def _row_hit(pattern: regex.Pattern, values: tuple[Any, ...], deadline: float) -> bool:
    for value in values:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if pattern.search("" if value is None else str(value), concurrent=True, timeout=left * MATCHER_SHARE):
            return True
    return False


def search_dataset(ws: Workspace, name: str, text: str, *, regex: bool = False, case_sensitive: bool = False,
                   fields: Sequence[str] = SEARCH_FIELDS, timeout: float = SEARCH_TIMEOUT_S) -> pd.DataFrame:
    """The rows of stored dataset `name` that match (all columns, original index kept)."""
    from dgr_core.data.store import DatasetStore

    df = DatasetStore(ws).load(name)
    return df[search_mask(df, text, regex=regex, case_sensitive=case_sensitive, fields=fields, timeout=timeout)]
