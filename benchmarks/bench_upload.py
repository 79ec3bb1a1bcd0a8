"""Peak server memory for a 200 MiB JSON Lines upload: what importing it costs the Streamlit process.

A JSONL file of STAR-1 records (ids made unique) is built to `--mib` MiB. A fresh Python process imports what the
app's server holds (streamlit, pandas, pyarrow, the Datasets page's modules), records its RSS, then does what the
page does with an upload: the upload's bytes in memory (as Streamlit keeps them), `load_upload` (copied to the
workspace in blocks) and `DatasetStore.import_file` (streamed chunk by chunk into Parquet). The peak is the
process's `ru_maxrss` (resource.getrusage). `--code DIR` measures another checkout the same way (e.g. main, before
this change: it is given the upload as bytes, as its page did).

    python benchmarks/bench_upload.py                       # this checkout; writes benchmarks/results_upload.md
    python benchmarks/bench_upload.py --code /work/main     # the code before, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAR1 = REPO.parent / "shared" / "data" / "STAR-1" / "data" / "STAR-1.json"

CHILD = r"""
import io, json, os, resource, sys, time
from pathlib import Path

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

import streamlit, pandas, pyarrow, pyarrow.parquet  # what the server has loaded anyway
from dgr_core.data.loaders import load_upload
from dgr_core.data.store import DatasetStore
from dgr_core.workspace import Workspace
import inspect

src, home, stream = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "stream"
base = rss_mib()
base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
data = src.read_bytes()  # the upload as Streamlit holds it
held = rss_mib()
store = DatasetStore(Workspace(home))
t = time.perf_counter()
path = load_upload("big.jsonl", io.BytesIO(data) if stream else data, home / "uploads")
info = store.import_file(path, "big")
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"base": base, "base_peak": base_peak, "held": held, "peak": peak, "rows": info.n_rows,
                  "seconds": seconds}))
"""


def build_file(target: Path, mib: int) -> int:
    """A JSONL of STAR-1 records repeated (unique ids), just under `mib` MiB (the upload cap); returns the rows."""
    records = json.loads(STAR1.read_text(encoding="utf-8"))
    limit, size, n = mib * 2**20, 0, 0
    with open(target, "w", encoding="utf-8") as fh:
        while True:
            rec = dict(records[n % len(records)], id=f"r{n}")
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            if size + len(line.encode("utf-8")) > limit:
                return n
            fh.write(line)
            size += len(line.encode("utf-8"))
            n += 1


def measure(code: Path, src: Path, stream: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="dgr-upload-") as home:
        env = {**os.environ, "PYTHONPATH": str(code), "DGR_HOME": home}
        out = subprocess.run([sys.executable, "-c", CHILD, str(src), home, "stream" if stream else "bytes"],
                             capture_output=True, text=True, env=env, cwd=code, check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--code", type=Path, default=REPO, help="checkout to measure (default: this one)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dgr-upload-src-") as tmp:
        src = Path(tmp) / "big.jsonl"
        rows = build_file(src, args.mib)
        size = src.stat().st_size / 2**20
        got = measure(args.code.resolve(), src, stream=args.code.resolve() == REPO)
    cost = got["peak"] - got["base"]
    text = "\n".join([
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {size:.0f} MiB JSONL, code `{args.code}`: peak RSS "
        f"{got['peak']:.0f} MiB = {got['peak'] / size:.2f}x the file", "",
        f"Command: `python benchmarks/bench_upload.py --mib {args.mib}" + (f" --code {args.code}`" if args.code != REPO
                                                                          else "`")
        + f" · machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", "",
        "| file | rows | server RSS before | with the upload held | peak during import | peak − before | "
        "import time |", "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {size:.0f} MiB | {rows:,} | {got['base']:.0f} MiB | {got['held']:.0f} MiB | **{got['peak']:.0f} MiB "
        f"({got['peak'] / size:.2f}x)** | {cost:.0f} MiB ({cost / size:.2f}x) | {got['seconds']:.0f} s |", ""])
    print(text)
    if not args.no_write:
        out = Path(__file__).with_name("results_upload.md")
        head = out.read_text() if out.is_file() else "# Upload memory: peak server RSS for a large JSONL\n\n"
        out.write_text(head + text + "\n")


if __name__ == "__main__":
    main()
