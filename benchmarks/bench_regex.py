"""Regex worst case: how long the Datasets search takes on catastrophic patterns, and whether other sessions run.

Each pattern is searched (as the page and `dgr datasets search` do, through `dgr_core.data.search`) in a 26- and a
40-character field and over the 1,000 rows of STAR-1; a second thread ticks every millisecond meanwhile, standing in
for another user's session: its tick rate shows whether the search holds the GIL. For comparison, Python's `re` on
the same pattern and the 26-character field runs in a subprocess stopped after `--re-limit` seconds (the old code).

    python benchmarks/bench_regex.py            # writes benchmarks/results_regex.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgr_core.data.loaders import load_file  # noqa: E402
from dgr_core.data.search import MAX_PATTERN_CHARS, SEARCH_TIMEOUT_S, SearchError, search_mask  # noqa: E402

STAR1 = REPO.parent / "shared" / "data" / "STAR-1" / "data" / "STAR-1.json"
PATTERNS = [r"(a+)+$", r"(a|aa)+$", r"(a|a)+$", r"(\w|\w\w)+!x", r"^(a+)+b", r"(.*a){12}$", r"((a|b)*)*c",
            r"(?:\s*\w+\s*)+z$", "(" * 200 + "a" + ")" * 200, "x" * MAX_PATTERN_CHARS]


def ticker(stop: threading.Event, ticks: list[float]) -> None:
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)


def timed_search(frame: pd.DataFrame, pattern: str) -> tuple[float, str, float]:
    """(seconds, outcome, other thread's ticks per second) of one search."""
    stop, ticks = threading.Event(), []
    thread = threading.Thread(target=ticker, args=(stop, ticks))
    thread.start()
    start = time.perf_counter()
    try:
        outcome = f"{int(search_mask(frame, pattern, regex=True).sum())} rows match"
    except SearchError as exc:
        outcome = "stopped" if "took longer" in str(exc) else f"error: {str(exc)[:60]}"
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    return elapsed, outcome, len(ticks) / max(elapsed, 1e-9)


def re_seconds(pattern: str, text: str, limit: float) -> str:
    """Python `re` (the old search) on one field, in a subprocess killed after `limit` s."""
    code = f"import re, time; t = time.perf_counter(); re.search({pattern!r}, {text!r}); " \
           "print(time.perf_counter() - t)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=limit)
        return f"{float(out.stdout):.2f} s" if out.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
        return f"> {limit:.0f} s (killed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--re-limit", type=float, default=20.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    stop, ticks = threading.Event(), []
    thread = threading.Thread(target=ticker, args=(stop, ticks))
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join()
    idle = len(ticks) / 1.0  # ticks per second with nothing else running in this process
    star = load_file(STAR1)[0]
    frames = {"26 chars": pd.DataFrame({"prompt": ["a" * 26 + "!"], "reasoning": [""], "answer": [""]}),
              "40 chars": pd.DataFrame({"prompt": ["a" * 40 + "!"], "reasoning": [""], "answer": [""]}),
              "STAR-1, 1,000 rows": star}
    rows, worst = [], 0.0
    for pattern in PATTERNS:
        shown = pattern if len(pattern) <= 30 else f"{pattern[:12]}… ({len(pattern)} chars)"
        shown = shown.replace("|", "\\|")  # a table cell
        cells = []
        for frame in frames.values():
            seconds, outcome, rate = timed_search(frame, pattern)
            worst = max(worst, seconds)
            cells.append(f"{seconds:.2f} s, {outcome}, other thread {rate / idle:.0%}")
        old = re_seconds(pattern, "a" * 26 + "!", args.re_limit) if len(pattern) <= 30 else "–"
        rows.append(f"| `{shown}` | " + " | ".join(cells) + f" | {old} |")
        print(rows[-1], flush=True)
    literal = timed_search(star, "bomb")[0]
    text = "\n".join([
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — worst case {worst:.2f} s (limit {SEARCH_TIMEOUT_S:g} s)", "",
        f"Command: `python benchmarks/bench_regex.py` · machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f} (shared with other engineers' runs) · a literal search of STAR-1 (1,000 "
        f"rows, all fields) takes {literal:.2f} s · 'other thread' = ticks per second of a second thread during the "
        "search, relative to idle (100% = the search does not hold the GIL)", "",
        "| pattern | 26-char field | 40-char field | STAR-1, 1,000 rows | Python `re`, 26-char field (old code) |",
        "| --- | --- | --- | --- | --- |", *rows, ""])
    print(text)
    if not args.no_write:
        out = Path(__file__).with_name("results_regex.md")
        head = out.read_text() if out.is_file() else "# Regex search: worst case and the GIL\n\n"
        out.write_text(head + text + "\n")


if __name__ == "__main__":
    main()
