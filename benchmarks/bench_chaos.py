"""Chaos benchmark: SIGKILL job workers at random moments, resume, and check the results equal an uninterrupted run.

For each job kind (score, refine, train, evaluate; real jobs on the embedded demo model through transformers, tiny
settings so the whole runs in minutes on 2 cores), it:
1. runs the job once without interruption in its own workspace (the reference, and its duration T);
2. in a second workspace, submits the same job and, `--kills` times, waits a random time in [0.3 s, T] and
   SIGKILLs the worker's whole process group (as the OOM killer would, no chance to clean up), checks that the
   run then shows "failed" (not "running" forever), counts torn JSON Lines the kill left, and resumes it;
3. lets the last resume finish and compares the results with the reference: score caches (tables and per-token
   log-probs), the refined dataset and every generation, the loss curve and the trained adapter's weights, every
   graded output and the metrics.

A kill "survives" when its run ends done with results identical to the reference.

    python benchmarks/bench_chaos.py                     # 8 kills x 4 kinds, demo model, writes results_chaos.md
    python benchmarks/bench_chaos.py --kills 2 --kinds score --no-write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workspace import REPO, fresh_workspace  # noqa: E402

sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dgr_core.data.demo import DEMO_EXTERNAL, ensure_demo_datasets  # noqa: E402
from dgr_core.data.store import DatasetStore  # noqa: E402
from dgr_core.jobs import manager, proc  # noqa: E402
from dgr_core.workspace import Workspace, read_jsonl  # noqa: E402

DATASET = "chaos"
# Fields that differ between any two runs (wall-clock times, speeds, the run's own id and folder): left out.
VOLATILE = {"t", "time", "created_at", "finished_at", "started_at", "updated_at", "model_ref", "output"}
VOLATILE_SUFFIXES = ("seconds", "_s", "_per_s")
# Counts of the work the *last* process did (the rest came from what earlier processes finished): they must differ
# after a resume. The work itself (caches, generations, weights, outputs) is compared in full.
HISTORY = {"cache_hits", "computed", "n_generated", "resumed_from_epoch", "n_reused", "reused", "skipped",
           "n_skipped", "resumed", "n_resumed", "run_id"}
RUN_NAME = re.compile(r"\d{8}-\d{6}-[a-z0-9-]+-[0-9a-f]{8}")  # a run folder's name: differs between runs


def configs(model: str) -> dict[str, dict[str, Any]]:
    """Tiny but real settings per kind (the demo model on CPU)."""
    spec = {"ref": model, "device": "cpu"}
    gen = {"max_new_tokens": 24, "batch_size": 2, "temperature": 0.0}
    return {
        "score": {"dataset": DATASET, "score": {"model": spec, "backend": "hf", "max_length": 192,
                                                "chunk_size": 4, "token_budget": 512}},
        "refine": {"dataset": DATASET, "model": spec, "backend": "hf", "mode": "joint", "generation": gen,
                   "limit": 8, "chunk_size": 2, "score_after": False, "output_name": "chaos-refined"},
        "train": {"dataset": DATASET, "model": spec, "subset": {"strategy": "random", "n": 4, "seed": 0},
                  "train": {"epochs": 3, "batch_size": 2, "lora_r": 4, "max_length": 160}},
        "evaluate": {"model": spec, "backend": "hf", "benchmarks": ["arithmetic"], "limit": 8,
                     "arithmetic_levels": [1], "generation": {**gen, "max_new_tokens": 16, "batch_size": 2}},
        # DGR in miniature at its smallest: refine 4, score both sets, train 2 samples x 1 epoch on each set (one
        # budget, one seed), evaluate the base and both trained models; its steps run as child runs of the demo.
        "demo": {"model": spec, "backend": "hf", "n_refine": 4, "budgets": [2], "seeds": [0], "epochs": 1,
                 "refine_max_new_tokens": 24, "eval_max_new_tokens": 16, "batch_size": 2,
                 "eval_limits": {"arithmetic": 4, "advbench50": 2, "xstest": 2}},
    }


def workspace(tag: str) -> Workspace:
    ws = Workspace(fresh_workspace(f"dgr-chaos-{tag}-"))
    ensure_demo_datasets(ws)
    store = DatasetStore(ws)
    store.save(DATASET, store.load(DEMO_EXTERNAL).head(16), origin="bench_chaos")
    return ws


# ---------------------------------------------------------------- what "identical" means, per kind


def _clean(obj: Any) -> Any:
    """Drop wall-clock fields (times, speeds) recursively: everything else must match exactly."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in sorted(obj.items())
                if k not in VOLATILE and k not in HISTORY and not k.endswith(VOLATILE_SUFFIXES)}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, str):
        return RUN_NAME.sub("<run>", obj)
    return obj


def _files_digest(folder: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in suffixes}


def outcome(kind: str, ws: Workspace, run_dir: Path) -> dict[str, Any]:
    """What the run produced, without times: compared between the reference and the chaos run."""
    short_id = run_dir.name.rsplit("-", 1)[-1]  # names made from the run (the demo's datasets) carry it
    raw = json.loads((run_dir / "result.json").read_text())
    # Run folder names first (a child run's name holds the demo's short id), then the id in dataset names.
    result = json.loads(json.dumps(_clean(raw)).replace(short_id, "<id>"))
    for key in ("run", "run_id", "run_dir", "output_dir", "workspace", *HISTORY):
        result.pop(key, None)
    out: dict[str, Any] = {"result": result}
    if kind == "score":
        out["cache"] = _files_digest(ws.scores, (".parquet", ".npy", ".npz"))
    elif kind == "refine":
        gens = {str(r["id"]): _clean(r) for r in read_jsonl(run_dir / "generations.jsonl")}
        out["generations"] = dict(sorted(gens.items()))
        frame = DatasetStore(ws).load("chaos-refined")
        out["refined"] = hashlib.sha256(frame.to_json(orient="records").encode()).hexdigest()[:16]
    elif kind == "train":
        out["loss"] = [_clean(r) for r in read_jsonl(run_dir / "loss.jsonl")]
        out["weights"] = _files_digest(run_dir, (".safetensors",))
    elif kind == "demo":
        out["refined"] = hashlib.sha256(DatasetStore(ws).load(raw["datasets"]["refined"])
                                        .to_json(orient="records").encode()).hexdigest()[:16]
    elif kind == "evaluate":
        rows = [_clean(r) for r in read_jsonl(run_dir / "outputs.jsonl")]
        out["outputs"] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# ---------------------------------------------------------------- killing


def torn_lines(run_dir: Path) -> int:
    """JSON Lines files in the run folder whose last line was cut by the kill (no final newline)."""
    n = 0
    for path in run_dir.rglob("*.jsonl"):
        data = path.read_bytes()
        n += bool(data) and not data.endswith(b"\n")
    return n


def kill_group(run_dir: Path) -> bool:
    """SIGKILL the worker's process group (identity checked); False if it was not running."""
    st = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").is_file() else {}
    pid, ident = manager._worker(run_dir, st)
    if not pid or not proc.alive(pid, ident):
        return False
    os.killpg(pid, signal.SIGKILL)
    return True


def wait_progress(run_dir: Path, timeout: float) -> None:
    """Until the worker has appended two progress events with a count (`done`) since now, or the run ended."""
    seen = len(manager.progress_events(run_dir))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and manager.status(run_dir)["state"] not in manager.FINAL:
        fresh = manager.progress_events(run_dir)[seen:]
        if sum(e.get("done") is not None for e in fresh) >= 2:
            return
        time.sleep(0.1)


def wait_final(run_dir: Path, timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    st = manager.wait(run_dir, timeout=timeout, poll=0.1)
    return st["state"], time.monotonic() - start


def chaos_run(kind: str, cfg: dict[str, Any], kills: int, ref_s: float, rng: random.Random,
              reference: dict[str, Any]) -> dict[str, Any]:
    """Kill and resume until `kills` kills have landed. A run that finishes before the next kill is checked against
    the reference at once (its kills count as survived only if it matches) and the work starts over in a fresh
    run folder, so every kill is checked by the run it hit."""
    ws = workspace(f"{kind}-chaos")
    run_dir = manager.submit(ws, kind, cfg, name=f"chaos {kind}")
    landed = torn = shown_failed = 0
    segments: list[dict[str, Any]] = []  # one per run folder: its kills and whether its results matched
    seg_kills = 0
    phases: list[str] = []
    while landed < kills:
        if landed % 2 == 0:  # anywhere: imports, model load, work, writing
            time.sleep(rng.uniform(0.3, max(0.6, ref_s)))
        else:  # in the middle of the work: after the resumed worker reported progress
            wait_progress(run_dir, timeout=ref_s * 3)
            time.sleep(rng.uniform(0.0, 1.5))
        st = manager.status(run_dir)
        if st["state"] in manager.FINAL:  # finished before the kill: check it, then start over
            segments.append(_segment(kind, ws, run_dir, st["state"], seg_kills, reference))
            phases.append("finished-first")
            ws, seg_kills = workspace(f"{kind}-chaos"), 0
            run_dir = manager.submit(ws, kind, cfg, name=f"chaos {kind}")
            continue
        phases.append(str((manager.progress_events(run_dir, last=1) or [{}])[-1].get("message", st["state"]))[:40])
        if not kill_group(run_dir):
            continue
        landed += 1
        seg_kills += 1
        time.sleep(0.2)
        torn += torn_lines(run_dir)
        deadline = time.monotonic() + 10
        while manager.status(run_dir)["state"] not in manager.FINAL and time.monotonic() < deadline:
            time.sleep(0.1)
        shown_failed += manager.status(run_dir)["state"] == "failed"
        manager.resume(run_dir)
    state, _ = wait_final(run_dir, timeout=900)
    segments.append(_segment(kind, ws, run_dir, state, seg_kills, reference))
    survived = sum(s["kills"] for s in segments if s["identical"])
    differs = sorted({d for s in segments for d in s["differs"]})
    return {"state": state, "kills": landed, "survived": survived, "torn": torn, "shown_failed": shown_failed,
            "phases": phases, "runs": len(segments), "differs": differs}


def _segment(kind: str, ws: Workspace, run_dir: Path, state: str, kills: int,
             reference: dict[str, Any]) -> dict[str, Any]:
    differs = _diff(reference, outcome(kind, ws, run_dir)) if state == "done" else [f"ended {state}"]
    return {"kills": kills, "identical": not differs, "differs": differs}


def bench_kind(kind: str, cfg: dict[str, Any], kills: int, rng: random.Random) -> dict[str, Any]:
    ref_ws = workspace(f"{kind}-ref")
    start = time.monotonic()
    ref_dir = manager.submit(ref_ws, kind, cfg, name=f"reference {kind}")
    state, _ = wait_final(ref_dir, timeout=900)
    ref_s = time.monotonic() - start
    if state != "done":
        raise SystemExit(f"reference {kind} run ended {state}: {manager.status(ref_dir).get('error')}")
    chaos = chaos_run(kind, cfg, kills, ref_s, rng, outcome(kind, ref_ws, ref_dir))
    print(f"{kind}: reference {ref_s:.1f} s; {chaos['kills']} kills over {chaos['runs']} run(s), survived "
          f"{chaos['survived']}, final {chaos['state']} {chaos['differs'] or ''}; shown failed after kill "
          f"{chaos['shown_failed']}/{chaos['kills']}; torn JSONL {chaos['torn']}", flush=True)
    return {"kind": kind, "ref_s": ref_s, **chaos}


def report(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> str:
    total = sum(r["kills"] for r in rows)
    survived = sum(r["survived"] for r in rows)
    lines = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {survived} / {total} kills survived",
             "", f"Command: `python benchmarks/bench_chaos.py --kills {args.kills} --seed {args.seed} --model "
             f"{args.model}` · machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load average {os.getloadavg()[0]:.1f} at the end (shared with other engineers' runs) · wall "
             f"{wall / 60:.1f} min", "",
             "| kind | reference run | kills | run folders (a run that finished before the next kill is checked, "
             "then the work starts over) | shown failed after the kill | torn JSONL lines cut by a kill | kills "
             "survived (run ended done, results identical) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bad = f" (differs: {', '.join(r['differs'])})" if r["differs"] else ""
        lines.append(f"| {r['kind']} | {r['ref_s']:.1f} s | {r['kills']} | {r['runs']} | {r['shown_failed']} / "
                     f"{r['kills']} | {r['torn']} | **{r['survived']} / {r['kills']}**{bad} |")
    lines += ["", "Where the kills landed (last progress message before each): "
              + "; ".join(f"{r['kind']}: {', '.join(r['phases'])}" for r in rows), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=8, help="kills per kind")
    parser.add_argument("--kinds", default="score,refine,train,evaluate", help="also: demo")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rng, start = random.Random(args.seed), time.monotonic()
    cfgs = configs(args.model)
    rows = [bench_kind(kind, cfgs[kind], args.kills, rng) for kind in args.kinds.split(",")]
    text = report(rows, args, time.monotonic() - start)
    print(text)
    if not args.no_write:
        out = Path(__file__).with_name("results_chaos.md")
        head = out.read_text() if out.is_file() else "# Chaos: SIGKILLed jobs resume to identical results\n\n"
        out.write_text(head + text + "\n")


if __name__ == "__main__":
    main()
