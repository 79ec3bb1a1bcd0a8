"""Benchmark: wall time and numbers of `dgr demo` (DGR in miniature), step by step, recorded in results_demo.md.

    .venv/bin/python benchmarks/bench_demo.py                  # the demo defaults, fresh temporary workspace
    .venv/bin/python benchmarks/bench_demo.py -- --n-refine 10  # anything after `--` goes to `dgr demo`
    .venv/bin/python benchmarks/bench_demo.py --no-record       # print only

Runs the real command (`dgr demo`: a worker process, the embedded SmolLM2-135M-Instruct on the hf backend) in a
fresh workspace whose models folder links to the repo's cache/models (the converted demo model is reused; no
score, dataset or run is cached), then appends one section to benchmarks/results_demo.md: the command, the
machine (CPU, cores, torch threads, OpenMP settings, load average before and after: the development machines are
shared, and a loaded machine is slow), the wall time of every step (from the demo run's steps.json) and in total,
the refine / shift / SFT summaries and the metrics table (value, 95% CI, n).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _workspace import fresh_workspace

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results_demo.md"
HEADER = ("# DGR in miniature: measured runs\n\nAppended by `benchmarks/bench_demo.py` (newest last). The target: "
          "the defaults finish in under 20 minutes on 2 CPU cores. Times depend on what else runs on the machine: "
          "see the load averages.\n")


def machine() -> dict[str, Any]:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "python": platform.python_version(), "torch": torch.__version__,
            "omp": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ},
            "load_before": [round(x, 2) for x in os.getloadavg()]}


def run_demo(home: Path, extra: list[str]) -> tuple[int, float]:
    env = {**os.environ, "DGR_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    # `python -m dgr_core.cli` rather than the `dgr` script: the same command, but it runs the code of the checkout
    # on PYTHONPATH (a worktree) instead of whatever the virtualenv installed.
    cmd = [sys.executable, "-m", "dgr_core.cli", "demo", *extra]
    print(f"$ DGR_HOME={home} dgr demo {' '.join(extra)}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL).returncode
    return rc, time.perf_counter() - t0


def report(home: Path, rc: int, wall: float, extra: list[str], info: dict[str, Any]) -> dict[str, Any]:
    """What the demo run wrote (steps.json, result.json), with the command, the machine and the wall time."""
    from dgr_core.jobs import manager
    from dgr_core.jobs.results import DemoResult
    from dgr_core.pipeline import demo_table, read_steps
    from dgr_core.workspace import Workspace

    demo = manager.list_runs(Workspace(home), "demo")[0]
    result = demo.result_as(DemoResult) or DemoResult()  # empty when the demo failed
    info = {**info, "load_after": [round(x, 2) for x in os.getloadavg()]}
    return {"command": " ".join(["dgr", "demo", *extra]), "rc": rc, "state": demo.state,
            "error": demo.status.get("error"), "wall_s": round(wall, 1), "machine": info,
            "steps": read_steps(demo.run_dir), "refine": result.refine.to_dict(), "shift": result.shift,
            "train": {k: t.to_dict() for k, t in result.train.items()},
            "table": demo_table(result).drop(columns=["run_id"]).to_dict("records"),
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


def _num(value: Any, fmt: str = ".2f") -> str:
    missing = value is None or (isinstance(value, float) and value != value)  # None or NaN
    return "–" if missing else format(value, fmt)


def markdown(rep: dict[str, Any]) -> str:
    m = rep["machine"]
    lines = [f"## {rep['when']} · `{rep['command']}`", "",
             f"**{rep['state']}** in **{rep['wall_s'] / 60:.1f} min** ({rep['wall_s']:.0f} s wall, worker start "
             f"and model loads included){': ' + str(rep['error']) if rep.get('error') else ''}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"CUDA {m['cuda']}, Python {m['python']}, OpenMP env {m['omp'] or 'default'}; load average "
             f"{m['load_before']} before, {m['load_after']} after.", "",
             "| step | kind | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {s['label']} | {s['kind']} | {_num(s.get('seconds'), '.1f')} |" for s in rep["steps"]]
    refine, shift = rep["refine"], rep["shift"]
    lines += ["", f"Refine: {refine.get('n_fell_back', '?')} of {refine.get('n', '?')} rewrites fell back "
                  f"({refine.get('fallback_reasons') or {}}). Mean NLL per token (total) under the base model: "
                  f"original {_num((shift.get('original') or {}).get('nll_total'))}, refined "
                  f"{_num((shift.get('refined') or {}).get('nll_total'))}."]
    for key, t in rep["train"].items():
        lines.append(f"SFT {key}: {t.get('n_samples')} samples, {t.get('steps')} steps, loss "
                     f"{_num(t.get('first_loss'))} → {_num(t.get('final_loss'))}.")
    lines += ["", "| model | N | seed | benchmark | metric | value | 95% CI | n |",
              "| --- | ---: | ---: | --- | --- | ---: | --- | ---: |"]
    for r in rep["table"]:
        ci = "–" if _num(r["ci_lo"]) == "–" else f"{r['ci_lo']:.2f}–{r['ci_hi']:.2f}"
        n_train, seed = ("" if _num(r[k]) == "–" else int(r[k]) for k in ("n_train", "seed"))
        lines.append(f"| {r['model']} | {n_train} | {seed} | {r['benchmark']} | {r['metric']} | {_num(r['value'])} "
                     f"| {ci} | {r['n']} |")
    return "\n".join(lines) + "\n"


def record(text: str, path: Path = RESULTS) -> None:
    """Append a section to results_demo.md (created with its header the first time)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else HEADER
    path.write_text(old.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def main(argv: list[str]) -> int:
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help=f"print only; do not append to {RESULTS.name}")
    args = parser.parse_args(ours)
    info = machine()
    home = fresh_workspace("dgr-bench-demo-")
    rc, wall = run_demo(home, extra)
    text = markdown(report(home, rc, wall, extra, info))
    print(text)
    if not args.no_record:
        record(text)
        print(f"recorded in {RESULTS}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
