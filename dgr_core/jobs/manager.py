"""Submit, watch, cancel and resume jobs; list past runs. Used by the pages and the CLI.

    run = submit(ws, "score", {"dataset": "star1", "score": {...}})
    status(run)  ->  {"state": "running", ...};   progress_events(run)[-1]  ->  latest progress
    cancel(run);  resume(run)

Jobs start as `python -m dgr_core.jobs run <run-dir>` in their own process session (start_new_session), so a
Streamlit rerun or a closed browser tab never kills them and cancel can signal the whole group.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dgr_core.errors import DGRError
from dgr_core.jobs.context import CANCEL_FILE, LOG_FILE, PROGRESS_FILE, RESULT_FILE, STATUS_FILE
from dgr_core.jobs.kinds import get_kind
from dgr_core.jobs.spec import SPEC_FILE, JobSpec, write_spec
from dgr_core.workspace import Workspace, atomic_write_json, read_json

FINAL = ("done", "failed", "cancelled")


@dataclass
class RunInfo:
    run_dir: Path
    spec: dict[str, Any]
    status: dict[str, Any]

    @property
    def id(self) -> str:
        return self.run_dir.name

    @property
    def kind(self) -> str:
        return self.spec.get("kind", "?")

    @property
    def state(self) -> str:
        return self.status.get("state", "unknown")

    def result(self) -> dict[str, Any] | None:
        path = self.run_dir / RESULT_FILE
        return read_json(path) if path.is_file() else None


def create_run(ws: Workspace, kind: str, config: dict[str, Any], name: str = "") -> Path:
    """Validate and write the spec into a new run folder (nothing starts yet)."""
    get_kind(kind).validate(config)
    spec = JobSpec(kind=kind, config=config, name=name, workspace=str(ws.root))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9]+", "-", (name or kind).lower()).strip("-")[:40] or kind
    run_dir = ws.runs / f"{stamp}-{slug}-{spec.id}"
    run_dir.mkdir(parents=True)
    write_spec(run_dir, spec)
    atomic_write_json(run_dir / STATUS_FILE, {"state": "queued", "created_at": spec.created_at})
    return run_dir


def start(run_dir: Path) -> int:
    """Start the worker process for a run folder; returns its pid."""
    (Path(run_dir) / CANCEL_FILE).unlink(missing_ok=True)
    with open(Path(run_dir) / LOG_FILE, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dgr_core.jobs", "run", str(run_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=_worker_env(),
        )
    status = read_json(Path(run_dir) / STATUS_FILE)
    atomic_write_json(Path(run_dir) / STATUS_FILE, {**status, "state": "queued", "pid": proc.pid})
    return proc.pid


WORKER_ENV_DEFAULTS = {
    # OpenMP threads that spin-wait make torch on a shared CPU crawl (a 4 x 32-token generate of the demo model
    # took 72-102 s instead of 6-7 s on 2 busy cores): they sleep.
    "OMP_WAIT_POLICY": "PASSIVE",
    # oneDNN caches up to 1,024 compiled primitives (bf16 ones with reordered weights), one per input shape; scoring
    # sees hundreds of shapes. 32 kept the bf16 engine's peak RSS at 313 MiB instead of 536 at the same speed
    # (benchmarks/RESULTS.md, Scoring).
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "32",
}


def _worker_env() -> dict[str, str]:
    """The worker's environment: WORKER_ENV_DEFAULTS unless the user set those variables otherwise."""
    return {**WORKER_ENV_DEFAULTS, **os.environ, "PYTHONUNBUFFERED": "1"}


def submit(ws: Workspace, kind: str, config: dict[str, Any], name: str = "") -> Path:
    run_dir = create_run(ws, kind, config, name)
    start(run_dir)
    return run_dir


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (finished child not yet reaped) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def status(run_dir: Path) -> dict[str, Any]:
    """status.json, with a dead worker in a non-final state reported as failed (crashed, e.g. killed for memory)."""
    path = Path(run_dir) / STATUS_FILE
    st = read_json(path) if path.is_file() else {"state": "unknown"}
    if st.get("state") in ("queued", "waiting", "running") and st.get("pid") and not _alive(st["pid"]):
        st = {**st, "state": "failed", "error": st.get("error") or
              "The job process died without finishing (killed, or out of memory). Resume it to continue: "
              "finished chunks are kept."}
    return st


def progress_events(run_dir: Path, last: int | None = None) -> list[dict[str, Any]]:
    path = Path(run_dir) / PROGRESS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines[-last:] if last else lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


def log_tail(run_dir: Path, n: int = 40) -> str:
    path = Path(run_dir) / LOG_FILE
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]) if path.is_file() else ""


def cancel(run_dir: Path) -> None:
    """Flag file first (the job checks it between batches), then SIGTERM to the job's process group."""
    (Path(run_dir) / CANCEL_FILE).touch()
    pid = status(run_dir).get("pid")
    if pid and _alive(pid):
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def resume(run_dir: Path) -> int:
    """Start a finished-with-failure or cancelled run again: its kind reuses cached chunks / finished samples."""
    st = status(run_dir)
    if st.get("state") in ("queued", "waiting", "running"):
        raise DGRError(f"Run {Path(run_dir).name} is still {st['state']}.")
    (Path(run_dir) / RESULT_FILE).unlink(missing_ok=True)
    return start(run_dir)


def wait(run_dir: Path, timeout: float = 600, poll: float = 0.25) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(run_dir)
        if st.get("state") in FINAL:
            return st
        time.sleep(poll)
    raise TimeoutError(f"Run {run_dir} did not finish in {timeout:.0f} s.")


def list_runs(ws: Workspace, kind: str | None = None) -> list[RunInfo]:
    """Every run folder, newest first; broken folders are skipped, never fatal."""
    out = []
    for run_dir in sorted(ws.runs.iterdir(), reverse=True):
        if not (run_dir / SPEC_FILE).is_file():
            continue
        try:
            info = RunInfo(run_dir, read_json(run_dir / SPEC_FILE), status(run_dir))
        except ValueError:
            continue
        if kind is None or info.kind == kind:
            out.append(info)
    return out


def get_run(ws: Workspace, run_id: str) -> RunInfo:
    run_dir = ws.runs / run_id
    if not (run_dir / SPEC_FILE).is_file():
        raise DGRError(f"No run {run_id!r} in {ws.runs}.")
    return RunInfo(run_dir, read_json(run_dir / SPEC_FILE), status(run_dir))
