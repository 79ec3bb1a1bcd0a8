"""Bounded-time search: literal and regex, a catastrophic pattern stopped with a clear SearchError, a length cap,
the same search from `dgr datasets search`."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from dgr_core import cli
from dgr_core.data import search
from dgr_core.data.search import MAX_PATTERN_CHARS, SearchError, search_mask
from dgr_core.data.store import DatasetStore

FRAME = pd.DataFrame({"id": ["a", "b", "c"], "prompt": ["How to make a Bomb?", "bake bread", None],
                      "reasoning": ["", "flour", "x"], "answer": ["No.", "Sure", "weapon"]})


def test_literal_and_regex_and_fields():
    assert search_mask(FRAME, "bomb").tolist() == [True, False, False]
    assert search_mask(FRAME, "bomb", case_sensitive=True).tolist() == [False, False, False]
    assert search_mask(FRAME, "a.e", fields=["prompt"]).tolist() == [False, False, False]  # literal dot
    assert search_mask(FRAME, r"b(omb|ake)\b", regex=True).tolist() == [True, True, False]
    assert search_mask(FRAME, "weapon", fields=["answer"]).tolist() == [False, False, True]


def test_catastrophic_regex_stops_within_the_budget_and_other_threads_run():
    evil = pd.DataFrame({"prompt": ["a" * 40 + "!"] * 3, "reasoning": "", "answer": ""})
    ticks = []
    stop = threading.Event()

    def other_session():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    thread = threading.Thread(target=other_session)
    thread.start()
    start = time.monotonic()
    with pytest.raises(SearchError, match=r"took longer than 0\.5 s and was stopped"):
        search_mask(evil, r"(a|aa)+$", regex=True, timeout=0.5)
    elapsed = time.monotonic() - start
    stop.set()
    thread.join()
    assert elapsed < 5  # stopped, not the minutes `re` needs; the figure is in benchmarks/bench_regex.py
    assert len(ticks) > 10  # the matcher released the GIL: another thread kept running meanwhile


def test_pattern_length_cap_and_bad_regex():
    with pytest.raises(SearchError, match=f"at most {MAX_PATTERN_CHARS}"):
        search_mask(FRAME, "x" * (MAX_PATTERN_CHARS + 1))
    with pytest.raises(SearchError, match="invalid regular expression"):
        search_mask(FRAME, "(unclosed", regex=True)
    with pytest.raises(SearchError, match="cannot search in nope"):
        search_mask(FRAME, "x", fields=["nope"])


def test_cli_datasets_search(ws, capsys):
    DatasetStore(ws).save("toy", FRAME.assign(source="t", category=""), origin="test")
    assert cli.main(["datasets", "search", "toy", "b(omb|ake)", "--regex", "--in", "prompt"]) == 0
    out = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.out.splitlines()] == ["a", "b"] and "2 matching rows" in out.err
    assert cli.main(["datasets", "search", "toy", "weapon", "--in", "prompt,reasoning"]) == 1
    assert cli.main(["datasets", "search", "toy", "x", "--in", "nope"]) == 2
    assert "cannot search in nope" in capsys.readouterr().err


def test_search_module_is_what_the_browser_uses():
    from dgr_core.data import stats

    assert stats.SearchError is search.SearchError
    assert stats.search_mask(FRAME, "bread").tolist() == [False, True, False]
