"""Risky-pattern audit benchmark: `dgr audit` with the heuristic on STAR-1 and the No-CoT split (1,000 rows each),
a cache-hit re-run, the scripted fake judge model through the same job path, and the heuristic's precision /
recall on the hand-labelled set (tests/data/audit_labelled.jsonl).

    .venv/bin/python benchmarks/bench_audit.py            # writes benchmarks/results_audit.md
    .venv/bin/python benchmarks/bench_audit.py --no-write

Each audit is a real `dgr audit` command in a fresh workspace (subprocess: job submission, worker start-up, import
of the file, tagging, tag table, result.json); wall time is the command's, "tagging" the job's own `seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _workspace import fresh_workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DGR_SHARED_DATA", REPO.parent / "shared" / "data"))
DATASETS = {"STAR-1": SHARED / "STAR-1/data/STAR-1.json",
            "No-CoT": SHARED / "LRM-Safety-Study/dataset/data/sft_train_nocot.json"}
OUT = REPO / "benchmarks" / "results_audit.md"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load}"


def dgr_audit(home: Path, args: list[str]) -> dict:
    env = {**os.environ, "DGR_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "dgr_core.cli", "audit", *args]
    print("$ dgr audit", " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {"args": " ".join(args), "wall_s": round(wall, 2), **result}


def labelled_figures() -> tuple[list[dict], list[dict]]:
    """Precision / recall on the whole labelled set, and on its held-out rows (labelled after the rules were
    final, never used to revise them)."""
    import pandas as pd

    from dgr_core.audit import stats
    from dgr_core.audit.engine import HeuristicJudge
    from dgr_core.audit.labelled import labelled_frame, read_labels

    path = REPO / "tests/data/audit_labelled.jsonl"
    df, gold = labelled_frame(path, SHARED)
    labels = read_labels(path)
    held = set(labels.loc[labels.get("split", pd.Series(dtype=str)).eq("heldout"), "id"])
    recs = HeuristicJudge().judge(df.to_dict("records"))
    pred = pd.DataFrame([{"id": i, **r} for i, r in zip(df["id"], recs, strict=True)])
    return (stats.precision_recall(pred, gold).to_dict("records"),
            stats.precision_recall(pred, gold[gold["id"].isin(held)]).to_dict("records"))


def rates_line(result: dict) -> str:
    return ", ".join(f"{r['label']} {100 * r['rate']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
                     for r in result["rates"])


def pr_table(pr: list[dict]) -> list[str]:
    lines = ["| pattern | rows | positives | tp | fp | fn | precision | recall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in pr:
        lines.append(f"| {r['pattern']} | {r['n']} | {r['positives']} | {r['tp']} | {r['fp']} | {r['fn']} | "
                     f"{r['precision']:.2f} | {r['recall']:.2f} |")
    return lines


def report(runs: list[dict], pr: tuple[list[dict], list[dict]], when: str) -> str:
    lines = [f"# Risky-pattern audit (benchmarks/bench_audit.py)\n\nRun {when} on {machine()}. The machine is "
             "shared with other engineers' test runs, so wall times are noisy upper bounds.\n",
             "| command | rows | tagged | computed | wall (command) | tagging (job) | samples/s (tagging) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        tagged = r["n"] - r["n_unparsable"]
        lines.append(f"| `dgr audit {r['args']}` | {r['n']} | {tagged} | {r['computed']} | {r['wall_s']} s | "
                     f"{r['seconds']} s | {r['samples_per_s'] or '–'} |")
    lines.append("\nThe third row re-runs the first on the imported dataset: every verdict comes from the cache. The "
                 "fourth is the scripted fake judge model (`dgr_core.backends.fake`) through the full judge path "
                 "(template, generation, parsing, validation, cache): it measures the pipeline's overhead; its tags "
                 "mean nothing. Wall time includes Python start-up, job submission, the worker process and, for the "
                 "first two rows, importing the JSON file.")
    lines.append("\nPattern rates (Wilson 95% intervals):\n")
    for r in runs:
        if r["computed"]:
            lines.append(f"- `{r['args']}`: {rates_line(r)}")
    lines += ["\nHeuristic on the whole hand-labelled set (tests/data/audit_labelled.jsonl). The rules were revised "
              "once after reading their errors on the first 50 rows, so these figures are mostly in-sample:\n",
              *pr_table(pr[0]),
              "\nOn the 10 held-out STAR-1 rows only (drawn at random and labelled after the rules were final; nan = "
              "no positive there and none predicted):\n", *pr_table(pr[1])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    home = fresh_workspace("dgr-bench-audit-")
    runs = []
    for path in DATASETS.values():
        runs.append(dgr_audit(home, ["--dataset", str(path), "--judge", "heuristic"]))
    runs.append(dgr_audit(home, ["--dataset", Path(DATASETS["STAR-1"]).stem, "--judge", "heuristic"]))  # cache hit
    runs.append(dgr_audit(home, ["--dataset", Path(DATASETS["STAR-1"]).stem, "--judge", "fake-judge",
                                 "--backend", "fake"]))
    text = report(runs, labelled_figures(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    print(text)
    if not args.no_write:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
