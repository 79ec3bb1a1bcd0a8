"""Submit, watch, cancel and resume jobs; list past runs. Used by the pages and the CLI.

    run = submit(ws, "score", {"dataset": "star1", "score": {...}})
    status(run)  ->  {"state": "running", ...};   progress_events(run)[-1]  ->  latest progress
    cancel(run);  resume(run)

Jobs start as `python -m dgr_core.jobs run <run-dir>` in their own process session (start_new_session), so a
Streamlit rerun or a closed browser tab never kills them and cancel can signal the whole group.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from dgr_core.config import Config, ConfigError
from dgr_core.errors import DGRError
from dgr_core.jobs import proc
from dgr_core.jobs.context import CANCEL_FILE, LOG_FILE, PROGRESS_FILE, RESULT_FILE, STATUS_FILE
from dgr_core.jobs.kinds import get_kind
from dgr_core.jobs.proc import identity
from dgr_core.jobs.spec import SPEC_FILE, JobSpec, write_spec
from dgr_core.workspace import Workspace, atomic_write_json, read_json

R = TypeVar("R", bound=Config)

FINAL = ("done", "failed", "cancelled")
ACTIVE = ("queued", "waiting", "running")
WORKER_FILE = "worker.json"  # the launcher's record of the worker: pid and identity
CANCEL_GRACE_S = 10.0  # seconds a cancelled job has to stop by itself before its process group is killed
_LAUNCHED: dict[str, subprocess.Popen] = {}
log = logging.getLogger(__name__)


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

    def result(self) -> Any:
        """result.json read through the kind's Result type (dgr_core.jobs.results), None if unfinished;
        ResultError (naming the run) when it does not parse."""
        from dgr_core.jobs.results import read_result

        return read_result(self.run_dir)

    def result_as(self, expect: type[R]) -> R | None:
        """`result()` typed as `expect` (e.g. EvalResult); ResultError when the run is of another kind."""
        from dgr_core.jobs.results import read_result

        return cast("R | None", read_result(self.run_dir, expect))

    def config(self) -> Config:
        """job.json's config read through the kind's Config type (ConfigError naming the field if it does not fit)."""
        return get_kind(self.kind).config.from_dict(self.spec.get("config"), "config")

    def config_as(self, expect: type[R]) -> R:
        """`config()` typed as `expect` (e.g. EvalConfig); ConfigError when the run is of another kind."""
        cfg = self.config()
        if not isinstance(cfg, expect):
            raise ConfigError(f"run {self.id} is a {self.kind!r} run (config {type(cfg).__name__}), not {expect.__name__}.")
        return cfg

    @property
    def what(self) -> str:
        """One line saying what the run does ("lora SFT of demo on 10 random rows of star1 (seed 0)")."""
        try:
            return get_kind(self.kind).summary(self.spec.get("config"))
        except DGRError:  # a kind this version does not know
            return self.kind

    def stored_result(self) -> dict[str, Any] | None:
        """result.json exactly as stored (for display only: readers use `result()`)."""
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
    """Start the worker process for a run folder; returns its pid.

    The status is reset to queued *before* the worker starts, and the launcher's pid goes to its own file
    (worker.json), never into status.json: the worker owns status.json from its first line on, so a worker that
    fails at once cannot have its failure overwritten by the launcher."""
    run_dir = Path(run_dir)
    (run_dir / CANCEL_FILE).unlink(missing_ok=True)
    (run_dir / WORKER_FILE).unlink(missing_ok=True)
    status = read_json(run_dir / STATUS_FILE) if (run_dir / STATUS_FILE).is_file() else {}
    dropped = ("pid", "pid_identity", "error", "traceback", "finished_at")
    atomic_write_json(run_dir / STATUS_FILE, {**{k: v for k, v in status.items() if k not in dropped},
                                              "state": "queued"})
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "dgr_core.jobs", "run", str(run_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=_worker_env(),
        )
    atomic_write_json(run_dir / WORKER_FILE, {"pid": child.pid, "pid_identity": identity(child.pid)})
    _LAUNCHED[str(run_dir)] = child  # reaped by status(): a finished child never lingers as a zombie
    return child.pid


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
    """Create the run folder and start its worker."""
    run_dir = create_run(ws, kind, config, name)
    start(run_dir)
    return run_dir


def _worker(run_dir: Path, st: dict[str, Any]) -> tuple[int | None, str | None]:
    """(pid, identity) of the run's worker: what the worker recorded in status.json, else what the launcher
    recorded in worker.json (the worker may not have written its first status yet)."""
    if st.get("pid"):
        return st["pid"], st.get("pid_identity")
    path = Path(run_dir) / WORKER_FILE
    try:
        rec = read_json(path) if path.is_file() else {}
    except ValueError:
        rec = {}
    return rec.get("pid"), rec.get("pid_identity")


def _reap(run_dir: Path) -> None:
    proc = _LAUNCHED.get(str(run_dir))
    if proc is not None and proc.poll() is not None:
        _LAUNCHED.pop(str(run_dir), None)


def status(run_dir: Path) -> dict[str, Any]:
    """status.json, with a worker that is gone while the run is not final reported as failed ("the job process
    died"), or cancelled when a cancel flag is there (it was stopped by force). A pid whose identity (start time)
    no longer matches is gone too: after a reboot that pid may be anyone."""
    run_dir = Path(run_dir)
    _reap(run_dir)
    path = run_dir / STATUS_FILE
    try:
        st = read_json(path) if path.is_file() else {"state": "unknown"}
    except ValueError:
        st = {"state": "unknown", "error": "status.json is unreadable"}
    if st.get("state") not in ACTIVE:
        return st
    pid, ident = _worker(run_dir, st)
    if pid is None or proc.alive(pid, ident):
        return st
    st = read_json(path) if path.is_file() else st  # the worker may have written its final state just now
    if st.get("state") not in ACTIVE:
        return st
    if (run_dir / CANCEL_FILE).exists():
        return {**st, "state": "cancelled", "error": st.get("error") or "Cancelled (stopped by force)."}
    return {**st, "state": "failed", "error": st.get("error") or
            "The job process died without finishing (killed, or out of memory). Resume it to continue: "
            "finished chunks are kept."}


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


def _signal_group(pid: int, ident: str | None, sig: int) -> bool:
    """Signal the worker's process group, only if the pid is still our worker (identity checked)."""
    if not proc.alive(pid, ident):
        return False
    try:
        os.killpg(pid, sig)  # start_new_session: the worker leads its own group, pgid == pid
    except (ProcessLookupError, PermissionError):
        return False
    return True


def cancel(run_dir: Path, grace_s: float = CANCEL_GRACE_S, block: bool = False) -> None:
    """Flag file first (the job checks it between batches), then SIGTERM to the job's process group, then
    SIGKILL to the group if it is still there after `grace_s` (native work - a model load, a long generate, a
    UMAP - never looks at the flag). `block=False` escalates from a background thread (the app); the worker
    also escalates on its own (see worker.py), so a cancel from a process that exits at once still ends it."""
    run_dir = Path(run_dir)
    (run_dir / CANCEL_FILE).touch()
    st = status(run_dir)
    if st.get("state") not in ACTIVE:
        return
    pid, ident = _worker(run_dir, st)
    if not pid or not _signal_group(pid, ident, signal.SIGTERM):
        return
    if block:
        _escalate(run_dir, pid, ident, grace_s)
    else:
        threading.Thread(target=_escalate, args=(run_dir, pid, ident, grace_s), daemon=True).start()


def _escalate(run_dir: Path, pid: int, ident: str | None, grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(run_dir)
        if not proc.alive(pid, ident):
            return
        time.sleep(0.1)
    if _signal_group(pid, ident, signal.SIGKILL):
        log.warning("Run %s ignored SIGTERM for %.0f s: killed its process group", Path(run_dir).name, grace_s)


def resume(run_dir: Path) -> int:
    """Start a failed or cancelled run again: its kind reuses cached chunks / finished samples. Two resumes of
    one run at once (two tabs, a double click) start one worker: the second gets a DGRError."""
    run_dir = Path(run_dir)
    with open(run_dir / ".resume.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        st = status(run_dir)
        if st.get("state") in ACTIVE:
            raise DGRError(f"Run {run_dir.name} is still {st['state']}: nothing to resume.")
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
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
