"""Benchmark: wall time of `dgr demo` (DGR in miniature) with its defaults, step by step.

    .venv/bin/python benchmarks/bench_demo.py                 # fresh temporary workspace, the demo defaults
    .venv/bin/python benchmarks/bench_demo.py -- --n-refine 10 # anything after `--` goes to `dgr demo`

Runs the real command (`dgr demo`, a worker process, the embedded SmolLM2-135M-Instruct on the hf backend) in a
fresh workspace whose models folder links to the repo's cache/models (the converted demo model is reused, nothing
else is cached), then prints the machine, the wall time of every step (from the demo run's steps.json), the total,
and the metrics table as Markdown, and writes the same as JSON (bench_demo.json) beside the temporary workspace.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": os.getloadavg()}


def fresh_workspace() -> Path:
    home = Path(tempfile.mkdtemp(prefix="dgr-bench-demo-")) / "home"
    home.mkdir(parents=True)
    (REPO / "cache" / "models").mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(REPO / "cache" / "models", target_is_directory=True)
    return home


def run_demo(home: Path, extra: list[str]) -> tuple[int, float]:
    env = {**os.environ, "DGR_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).with_name("dgr")), "demo", *extra]
    print("$", " ".join(["DGR_HOME=" + str(home), *cmd[0:1], *cmd[1:]]), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL).returncode
    return rc, time.perf_counter() - t0


def report(home: Path, rc: int, wall: float, extra: list[str], info: dict) -> dict:
    os.environ["DGR_HOME"] = str(home)
    from dgr_core.jobs import manager
    from dgr_core.pipeline import demo_table, read_steps
    from dgr_core.workspace import Workspace

    demo = manager.list_runs(Workspace(home), "demo")[0]
    result = demo.result() or {}
    return {"command": " ".join(["dgr", "demo", *extra]), "rc": rc, "state": demo.state,
            "error": demo.status.get("error"), "wall_s": round(wall, 1), "machine": info,
            "load_average_at_end": os.getloadavg(), "steps": read_steps(demo.run_dir),
            "refine": result.get("refine"), "shift": result.get("shift"), "train": result.get("train"),
            "table": demo_table(result).drop(columns=["run_id"]).to_dict("records"),
            "config": json.loads(json.dumps(result.get("config")))}


def markdown(rep: dict) -> str:
    lines = [f"Command: `{rep['command']}` → {rep['state']} in **{rep['wall_s'] / 60:.1f} min** "
             f"({rep['wall_s']:.0f} s wall, worker start and model loads included)", "",
             "| step | kind | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {s['label']} | {s['kind']} | {s.get('seconds') or 0:.1f} |" for s in rep["steps"]]
    lines += ["", "| model | benchmark | metric | value | 95% CI | n |", "| --- | --- | --- | ---: | --- | ---: |"]
    for r in rep["table"]:
        value = "–" if r["value"] is None else f"{r['value']:.2f}"
        ci = "–" if r["ci_lo"] is None else f"{r['ci_lo']:.2f}–{r['ci_hi']:.2f}"
        lines.append(f"| {r['model']} | {r['benchmark']} | {r['metric']} | {value} | {ci} | {r['n']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    info = machine()
    home = fresh_workspace()
    rc, wall = run_demo(home, extra)
    rep = report(home, rc, wall, extra, info)
    out = home.parent / "bench_demo.json"
    out.write_text(json.dumps(rep, indent=2, default=str), encoding="utf-8")
    print(f"report: {out}")
    print(json.dumps(info))
    print(markdown(rep))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
