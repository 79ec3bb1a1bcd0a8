"""Benchmark: how long the Shift and Compare pages take to render with 10,000 scored samples in the cache.

    .venv/bin/python benchmarks/bench_pages.py                       # fresh workspace, tiny model, 10,000 samples
    .venv/bin/python benchmarks/bench_pages.py --home /tmp/bench-ws  # reuse (or create) a workspace: scores once
    .venv/bin/python benchmarks/bench_pages.py --n 2000 --reruns 3   # smaller

Setup (not timed as page time): two datasets of n/2 rows each, "external" (STAR-1 questions and DeepSeek-R1
traces from ../shared/data, cycled with a variant suffix so every prompt is distinct) and "refined" (a rewrite of
each row that keeps `parent_id`), scored by the real scoring code (`score_dataset`, hf backend) under a tiny random
Llama (hidden 64 by default, `--hidden 576` for the demo model's width) built offline. Long traces are cut at
`--max-length` tokens, as the scorer does.

Then each page runs in Streamlit's AppTest (the page script, server side, in this process: what a browser waits
for before the page can draw, without the browser's own drawing). Shift: the first load, then each other tab opened
once (the first opening of "Shift statistics" computes and caches the statistics, "Map" the PCA map; both caches
are emptied before, so these first loads are cold), then timed reruns, each after a change a user would make (tab,
segment, colour, ...). Compare: the first load, then timed reruns (next / previous sample, order, diff part).
Prints the machine, the setup times and a Markdown table, and writes bench_pages.json into the workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DGR_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_average_at_start": os.getloadavg()}


def build_datasets(ws, n: int) -> None:
    """external (STAR-1 rows cycled to n/2, each prompt made distinct) and refined (parent_id -> external)."""
    from dgr_core.data.loaders import load_file
    from dgr_core.data.store import DatasetStore

    star, _ = load_file(SHARED / "STAR-1" / "data" / "STAR-1.json")
    half = n // 2
    ext = star.iloc[[i % len(star) for i in range(half)]].reset_index(drop=True)
    ext["id"] = [f"ext-{i}" for i in range(half)]
    ext["prompt"] = [f"{p} (variant {i // len(star)})" for i, p in enumerate(ext["prompt"])]
    ref = ext.copy()
    ref["id"] = [f"ref-{i}" for i in range(half)]
    ref["parent_id"] = ext["id"]
    ref["reasoning"] = [f"Let me restate this in my own words. {r[: len(r) // 2]}" for r in ext["reasoning"]]
    ref["answer"] = [f"In short: {a[:400]}" for a in ext["answer"]]
    store = DatasetStore(ws)
    store.save("external", ext, origin="benchmark")
    store.save("refined", ref, origin="benchmark")


def ensure_scored(ws, n: int, hidden: int, max_length: int) -> tuple[object, dict]:
    """The ScoreConfig of the tiny model, after scoring whatever is not cached yet; and the setup times."""
    from dgr_core.backends.base import get_backend
    from dgr_core.data.store import DatasetStore
    from dgr_core.models.loading import ModelSpec
    from dgr_core.models.tiny import build_tiny_model
    from dgr_core.scoring.api import ScoreConfig, score_dataset

    times = {}
    model_dir = ws.root / f"tiny-llama-{hidden}"
    if not (model_dir / "config.json").is_file():
        build_tiny_model(model_dir, hidden=hidden)
    if not DatasetStore(ws).exists("refined") or DatasetStore(ws).info("refined").n_rows != n // 2:
        build_datasets(ws, n)
    cfg = ScoreConfig(model=ModelSpec(str(model_dir)), backend="hf", max_length=max_length)
    backend = get_backend("hf", cfg.model, ws)
    for name in ("external", "refined"):
        t0 = time.perf_counter()
        result = score_dataset(ws, name, cfg, backend=backend)
        times[f"score {name}"] = {"seconds": round(time.perf_counter() - t0, 1), "computed": result.computed}
    return cfg, times


def timed(at, action: Callable | None = None) -> float:
    if action is not None:
        action(at)
    t0 = time.perf_counter()
    at.run()
    wall = time.perf_counter() - t0
    if at.exception or at.error:
        raise SystemExit(f"page failed: {[e.value for e in at.exception] + [e.value for e in at.error]}")
    return wall


def bench_page(page: str, state: dict, warmup: list[tuple[str, Callable]], actions: list[tuple[str, Callable]],
               reruns: int) -> dict:
    """First load, then the warm-up actions (views opened for the first time: their caches are filled), then
    `reruns` timed runs cycling through `actions`."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "views" / page), default_timeout=900)
    for k, v in state.items():
        at.session_state[k] = v
    first = [("first load", timed(at))] + [(label, timed(at, action)) for label, action in warmup]
    runs = []
    for i in range(reruns or len(actions)):
        label, action = actions[i % len(actions)]
        runs.append((label, timed(at, action)))
    later = [t for _, t in runs]
    return {"page": page, "first_load_s": round(first[0][1], 2),
            "first_open": [(label, round(t, 2)) for label, t in first],
            "median_s": round(statistics.median(later), 2), "max_s": round(max(later), 2),
            "runs": [(label, round(t, 3)) for label, t in runs]}


def _tab(label: str) -> Callable:
    def action(at) -> None:
        at.session_state["shift_tab"] = label

    return action


SHIFT_WARMUP = [(f"open {label} (first time)", _tab(label)) for label in ("Shift statistics", "Map", "Rankings")]
SHIFT_ACTIONS = [
    ("Distributions tab", _tab("Distributions")),
    ("ECDFs", lambda at: at.radio(key="shift_dist_kind").set_value("ecdf")),
    ("Shift statistics tab", _tab("Shift statistics")),
    ("NLL of answer", lambda at: at.radio(key="shift_segment").set_value("answer")),
    ("Map tab", _tab("Map")),
    ("colour map by NLL", lambda at: at.radio(key="shift_color").set_value("NLL")),
    ("colour map by category", lambda at: at.radio(key="shift_color").set_value("category")),
    ("Rankings tab", _tab("Rankings")),
    ("NLL of total", lambda at: at.radio(key="shift_segment").set_value("total")),
    ("rerun, nothing changed", lambda at: None),
]
COMPARE_ACTIONS = [
    ("next sample", lambda at: at.button(key="compare_next").click()),
    ("next sample", lambda at: at.button(key="compare_next").click()),
    ("diff of reasoning", lambda at: at.radio(key="compare_diff_part").set_value("reasoning")),
    ("previous sample", lambda at: at.button(key="compare_prev").click()),
    ("order by category", lambda at: at.selectbox(key="compare_order").set_value("category")),
    ("rerun, nothing changed", lambda at: None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="scored samples in all (two datasets of n/2)")
    parser.add_argument("--home", type=Path, default=None, help="workspace to use or create (default: a new one)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny model (embedding width)")
    parser.add_argument("--max-length", type=int, default=512, help="scored tokens per sample at most")
    parser.add_argument("--reruns", type=int, default=0,
                        help="timed reruns per page after the first load (default: each action once)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="dgr-bench-pages-")) / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(DGR_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    sys.path.insert(0, str(REPO))  # pages import dgr_ui, which lives beside them
    from dgr_core.models.loading import ModelSpec
    from dgr_core.workspace import Workspace

    info = machine()
    cfg, setup = ensure_scored(Workspace(home), args.n, args.hidden, args.max_length)
    for cache in ("shift", "projections"):  # cold first loads: statistics and maps are computed again
        shutil.rmtree(Workspace(home).scores / cache, ignore_errors=True)
    common = {"backend": "hf", "target_model": ModelSpec(cfg.model.ref),
              "shift_max_length": args.max_length, "compare_max_length": args.max_length}
    shift = bench_page("shift.py", {**common, "shift_datasets": ["external", "refined"]}, SHIFT_WARMUP,
                       SHIFT_ACTIONS, args.reruns)
    compare = bench_page("compare.py", {**common, "compare_a": "external", "compare_b": "refined"}, [],
                         COMPARE_ACTIONS, args.reruns)
    out = {"machine": info, "n": args.n, "hidden": args.hidden, "max_length": args.max_length,
           "setup": setup, "pages": [shift, compare], "load_average_at_end": os.getloadavg()}
    (home / "bench_pages.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in out.items() if k != "pages"}, indent=2))
    print("\n| page | first load (s) | later runs: median (s) | later runs: max (s) |\n|---|---|---|---|")
    for p in out["pages"]:
        print(f"| {p['page']} | {p['first_load_s']} | {p['median_s']} | {p['max_s']} |")
    for p in out["pages"]:
        print(f"\n{p['page']} first loads: " + "; ".join(f"{label} {t:.2f} s" for label, t in p["first_open"]))
        print(f"{p['page']} later runs: " + "; ".join(f"{label} {t:.2f} s" for label, t in p["runs"]))


if __name__ == "__main__":
    main()
