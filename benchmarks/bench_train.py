"""Benchmark: wall time of the 10-sample SFT run on the embedded demo model (the DGR paper's refusal activation),
end to end as a user starts it: `dgr train` -> worker process -> model load -> 3 epochs -> adapter saved.

    .venv/bin/python benchmarks/bench_train.py                      # LoRA, 10 samples x 3 epochs (the defaults)
    .venv/bin/python benchmarks/bench_train.py --method full        # full fine-tuning instead
    .venv/bin/python benchmarks/bench_train.py --threads 1          # one BLAS thread (a busy shared machine)
    .venv/bin/python benchmarks/bench_train.py --method lora --method full -- --batch-size 1   # extra dgr args

Each method runs the real command in a fresh workspace whose models folder links to the repo's cache/models (the
converted demo model is reused; nothing else is cached). Printed as Markdown: the machine (CPU, cores, load
average before and after: the development machines are shared), then per method the wall time of the whole
command, the job's own time, the training loop's time, steps, tokens/s, first and final loss. Target (issue): under 2 minutes on 2 CPU cores. Results go to benchmarks/results_train.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _workspace import fresh_workspace

REPO = Path(__file__).resolve().parents[1]
BASE_ARGS = ["--dataset", "demo-external-refusal", "--model", "demo", "--strategy", "random", "--n", "10",
             "--epochs", "3"]


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "python": platform.python_version(), "torch": torch.__version__}


def run_train(home: Path, method: str, extra: list[str]) -> dict:
    env = {**os.environ, "DGR_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    dgr = str(Path(sys.executable).with_name("dgr"))
    subprocess.run([dgr, "prepare"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
    cmd = [dgr, "train", *BASE_ARGS, "--method", method, "--name", f"bench-{method}", *extra]
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    print(f"$ {threads}DGR_HOME={home} dgr", " ".join(cmd[1:]), flush=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    return {"method": method, "rc": rc, "wall_s": round(wall, 1), "load_before": load_before,
            "load_after": os.getloadavg(), **job_numbers(home)}


def job_numbers(home: Path) -> dict:
    run = max((home / "runs").glob("*-bench-*"), key=lambda p: p.stat().st_mtime)
    from dgr_core.jobs.results import TrainResult, read_result

    res = read_result(run, TrainResult)
    events = [json.loads(x) for x in (run / "progress.jsonl").read_text().splitlines() if x.strip()]
    rates = [e["tokens_per_s"] for e in events if e.get("tokens_per_s")]
    res = res or TrainResult(seconds=float("nan"), train_seconds=float("nan"))  # a failed run: no result.json
    return {"run": run.name, "job_s": res.seconds, "train_s": res.train_seconds, "steps": res.steps,
            "tokens_per_s": rates[-1] if rates else None, "first_loss": res.first_loss,
            "final_loss": res.final_loss, "n_trainable": res.n_trainable, "learning_rate": res.learning_rate}


def markdown(info: dict, rows: list[dict]) -> str:
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} "
             f"threads), CUDA {info['cuda']}, Python {info['python']}", "",
             "| method | wall (command) | job | training loop | steps | tokens/s | loss first → final | "
             "trainable params | load avg before → after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['wall_s']} s | {r['job_s']} s | {r['train_s']} s | {r['steps']} | "
            f"{r['tokens_per_s']} | {r['first_loss']:.3f} → {r['final_loss']:.3f} | {r['n_trainable']:,} | "
            f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", action="append", choices=["lora", "full"], help="repeatable; default lora")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for the run (0 = torch's default: one per core)")
    parser.add_argument("extra", nargs="*", help="after --: more `dgr train` arguments")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the worker process at torch import
    info = machine()
    rows = [run_train(fresh_workspace("dgr-bench-train-"), m, args.extra) for m in (args.method or ["lora"])]
    print(markdown(info, rows))
    failed = [r for r in rows if r["rc"] != 0]
    for r in failed:
        print(f"{r['method']}: dgr train exited {r['rc']} (see {r['run']}/log.txt)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
