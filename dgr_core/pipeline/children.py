"""Running the demo's child runs in this process, and `steps.json`, the map of steps to child runs.

    result = run_inline(ChildContext(child_dir, ws, parent_ctx, 3, 8, "SFT on original, N=5"))   # typed Result

`run_inline` goes through the worker's own lifecycle (`run_job_inline`, without the device lock the demo job
holds) and reads the child's result back through its kind's Result type (`child_result`). A ChildContext forwards
every progress event to the parent ("step i/k · label · message") and stops when either run is cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from dgr_core.config import Config
from dgr_core.errors import DGRError
from dgr_core.jobs.context import JobContext
from dgr_core.jobs.results import read_result
from dgr_core.pipeline.config import STEPS_FILE
from dgr_core.workspace import Workspace, atomic_write_json, read_json

if TYPE_CHECKING:
    from dgr_core.pipeline.plan import Step

R = TypeVar("R", bound=Config)


# Progress fields a child reports that the demo run passes on unchanged.
FORWARDED = ("done", "total", "unit", "loss", "tokens_per_s", "eta_s", "padding")


class ChildContext(JobContext):
    """A JobContext on a child run folder that also reports to the parent and stops when the parent is cancelled."""

    def __init__(self, run_dir: Path, ws: Workspace, parent: JobContext, step_no: int, n_steps: int, label: str):
        super().__init__(run_dir, ws)
        self.parent, self.step_no, self.n_steps, self.label = parent, step_no, n_steps, label

    def progress(self, event: dict[str, Any]) -> None:
        super().progress(event)
        self.parent.progress(step_event(event, self.step_no, self.n_steps, self.label, self.run_dir.name))

    def should_stop(self) -> bool:
        return super().should_stop() or self.parent.should_stop()


def step_event(event: dict[str, Any], step_no: int, n_steps: int, label: str, child: str) -> dict[str, Any]:
    """The parent's view of a child event: the child's done/total, "step i/k · label · message"."""
    message = f"step {step_no}/{n_steps} · {label}" + (f" · {event['message']}" if event.get("message") else "")
    out = {k: event[k] for k in FORWARDED if k in event}
    return {**out, "step": step_no, "steps": n_steps, "step_label": label, "child": child, "message": message}


def run_inline(ctx: JobContext, parent: str = "") -> Config:
    """Run the child job in `ctx.run_dir` in this process through the worker's lifecycle (no device lock: the demo
    run holds it). Returns its result read back through the kind's Result type; a cancel or a failure propagates."""
    from dgr_core.jobs.worker import run_job_inline

    run_job_inline(ctx, parent)
    return child_result(ctx.run_dir)


def child_result(run_dir: Path) -> Config:
    """The typed result of a finished child run (DGRError when it has none: the step did not finish)."""
    result = read_result(run_dir)
    if result is None:
        raise DGRError(f"demo: child run {Path(run_dir).name} finished without a result.json.")
    return result


def step_result(results: Mapping[str, Config], key: str, expect: type[R]) -> R:
    """The result of step `key`, checked to be of the kind the demo expects there."""
    result = results[key]
    if not isinstance(result, expect):
        raise DGRError(f"demo: step {key!r} holds a {type(result).__name__}, not a {expect.__name__}.")
    return result


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / STEPS_FILE
    return read_json(path)["steps"] if path.is_file() else []


def _write_steps(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(Path(run_dir) / STEPS_FILE, {"steps": rows})


def init_steps(run_dir: Path, steps: list[Step]) -> list[dict[str, Any]]:
    """steps.json with every planned step (kept: run ids and timings of a resumed run)."""
    old = {row["key"]: row for row in read_steps(run_dir)}
    rows = [{"key": s.key, "kind": s.kind, "label": s.label, "run_id": None, "seconds": None, "reused": False,
             **old.get(s.key, {})} for s in steps]
    _write_steps(run_dir, rows)
    return rows


def update_step(run_dir: Path, rows: list[dict[str, Any]], key: str, **fields: Any) -> None:
    next(row for row in rows if row["key"] == key).update(fields)
    _write_steps(run_dir, rows)


def step_table(ws: Workspace, run_dir: Path) -> pd.DataFrame:
    """One row per step of a demo run: step, label, kind, state of its child run, seconds, run id (for the UI)."""
    from dgr_core.jobs import manager

    rows = []
    for i, row in enumerate(read_steps(run_dir), start=1):
        child = ws.runs / row["run_id"] if row.get("run_id") else None
        state = manager.status(child).get("state", "unknown") if child and child.is_dir() else "pending"
        rows.append({"step": i, "what": row["label"], "kind": row["kind"], "state": state,
                     "seconds": row.get("seconds"), "reused": bool(row.get("reused")), "run": row.get("run_id") or ""})
    return pd.DataFrame(rows, columns=["step", "what", "kind", "state", "seconds", "reused", "run"])
