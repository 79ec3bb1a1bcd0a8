"""What a running job writes: status (atomic), progress (appended JSON lines), its cancel check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dgr_core.jobs.proc import identity
from dgr_core.jobs.spec import utc_now
from dgr_core.workspace import Workspace, append_jsonl, atomic_write_json, read_json

STATUS_FILE, PROGRESS_FILE, RESULT_FILE, LOG_FILE, CANCEL_FILE = (
    "status.json", "progress.jsonl", "result.json", "log.txt", "cancel")
STATES = ("queued", "waiting", "running", "done", "failed", "cancelled")


class JobContext:
    """Handed to a job kind's `run`: where to write, how to report, whether to stop."""

    def __init__(self, run_dir: Path, workspace: Workspace):
        self.run_dir = Path(run_dir)
        self.ws = workspace
        self.last_progress: dict[str, Any] = {}

    def set_status(self, state: str, **fields: Any) -> None:
        path = self.run_dir / STATUS_FILE
        current = read_json(path) if path.is_file() else {}
        current.update(fields, state=state, updated_at=utc_now(), pid=os.getpid(), pid_identity=identity(os.getpid()))
        atomic_write_json(path, current)

    def progress(self, event: dict[str, Any]) -> None:
        event = {"t": utc_now(), **event}
        self.last_progress = event
        append_jsonl(self.run_dir / PROGRESS_FILE, event, fsync=False)  # repairs a line torn by a kill

    def should_stop(self) -> bool:
        return (self.run_dir / CANCEL_FILE).exists()

    def write_result(self, result: dict[str, Any]) -> None:
        from dgr_core.jobs.results import RESULT_SCHEMA

        atomic_write_json(self.run_dir / RESULT_FILE,
                          {"finished_at": utc_now(), "result_schema": RESULT_SCHEMA, **result})

    def path(self, name: str) -> Path:
        return self.run_dir / name
