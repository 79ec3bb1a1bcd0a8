"""Run one job in this process: `python -m dgr_core.jobs run <run-dir>`.

Order of events: validate the spec (a malformed spec fails here, before any model loads); take the device lock if
the kind uses a model (status "waiting" while another model job holds it); run; write `result.json` last and the
final status. SIGTERM (what cancel sends) sets the cancel flag so the job stops at its next check and keeps what
it finished; a watchdog thread kills the job's process group if it has not stopped `CANCEL_GRACE_S` after the flag
appeared (native work never checks it). Any exception becomes a failed status with the error message and the end of the traceback.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from dgr_core.errors import DGRError, JobCancelled
from dgr_core.jobs.context import CANCEL_FILE, LOG_FILE, RESULT_FILE, JobContext
from dgr_core.jobs.kinds import JobKind, get_kind
from dgr_core.jobs.spec import load_spec, utc_now
from dgr_core.workspace import Workspace

CANCEL_GRACE_S = 10.0  # DGR_CANCEL_GRACE_S overrides: seconds between a cancel and the SIGKILL

log = logging.getLogger("dgr_core.jobs")


def _setup_logging(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


@contextmanager
def device_lock(ws: Workspace, ctx: JobContext):
    """One model job at a time per workspace (an flock, released by the OS even if the process dies)."""
    path = ws.runs / ".device.lock"
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ctx.set_status("waiting", message="waiting for another model job to finish")
            while True:
                if ctx.should_stop():
                    raise JobCancelled("Cancelled while waiting for the device.") from None
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _watchdog(run_dir: Path, grace_s: float) -> None:
    """Once the cancel flag appears, give the job `grace_s` to stop between batches; if it is still running then
    (stuck in native code that never looks at the flag), record "cancelled" and SIGKILL this process (its group
    when it leads one, as a manager-started worker does, so helpers it started go too)."""
    flag = run_dir / CANCEL_FILE
    while not flag.exists():
        time.sleep(0.5)
    time.sleep(grace_s)
    try:
        JobContext(run_dir, Workspace.default()).set_status("cancelled", error="Cancelled (stopped by force after "
                                                            f"{grace_s:.0f} s).", finished_at=utc_now())
    finally:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def run(run_dir: Path) -> int:
    run_dir = Path(run_dir).resolve()
    _setup_logging(run_dir)
    signal.signal(signal.SIGTERM, lambda *_: (run_dir / CANCEL_FILE).touch())
    try:
        grace = float(os.environ.get("DGR_CANCEL_GRACE_S", CANCEL_GRACE_S))
    except ValueError:
        grace = CANCEL_GRACE_S
    threading.Thread(target=_watchdog, args=(run_dir, grace), daemon=True, name="cancel-watchdog").start()
    try:
        spec = load_spec(run_dir)
    except DGRError as exc:
        JobContext(run_dir, Workspace.default()).set_status("failed", error=str(exc), finished_at=utc_now())
        log.error("Invalid spec: %s", exc)
        return 2
    ws = Workspace(Path(spec.workspace)) if spec.workspace else Workspace.default()
    ctx = JobContext(run_dir, ws)
    kind = get_kind(spec.kind)
    config = kind.validate(spec.config)
    log.info("Job %s (%s) started", spec.id, spec.kind)
    try:
        execute(ctx, kind, config, lock=device_lock(ws, ctx) if kind.uses_model else nullcontext())
    except JobCancelled as exc:
        log.info("Cancelled: %s", exc)
        return 3
    except BaseException:  # noqa: BLE001 - execute wrote the failed status; the exit code says so
        return 1
    log.info("Done")
    return 0


def execute(ctx: JobContext, kind: JobKind, config: Any, *, lock: AbstractContextManager[Any] | None = None,
            parent: str = "") -> dict[str, Any] | None:
    """The run lifecycle, for the worker and for child runs run inline (`run_job_inline`): status "running",
    `kind.run` (inside `lock`), `result.json` last (through the kind's Result type), then status "done".
    A cancel or a failure leaves a cancelled / failed status with the error and propagates.
    Returns the result dict as written (None on the non-main processes of an `accelerate launch`)."""
    ctx.set_status("running", started_at=utc_now(), kind=kind.name, error=None, **({"parent": parent} if parent else {}))
    try:
        with lock or nullcontext():
            ctx.set_status("running")
            result = kind.run(config, ctx)
    except JobCancelled as exc:
        ctx.set_status("cancelled", error=str(exc), finished_at=utc_now())
        raise
    except BaseException as exc:  # every failure must reach status.json
        tb = traceback.format_exc()
        log.error("Failed: %s\n%s", exc, tb)
        ctx.set_status("failed", error=_friendly(exc), traceback=tb[-4000:], finished_at=utc_now())
        raise
    if os.environ.get("RANK", "0") != "0":  # under `accelerate launch`, only the main process writes the end
        return None
    written = kind.make_result(result)
    ctx.write_result(written)
    ctx.set_status("done", finished_at=utc_now(), error=None)
    return written


def run_job_inline(ctx: JobContext, parent: str = "") -> dict[str, Any]:
    """Run the job whose spec is in `ctx.run_dir` in this process, as the worker would but without the device
    lock (the caller holds it): a child step of a demo run. Validates the spec first, starts clean (a stale cancel
    flag and result are removed; outputs are kept, so a resumed child reuses them), copies log records to the
    child's own log.txt. Returns the result as written; a cancel or a failure propagates."""
    spec = load_spec(ctx.run_dir)
    kind = get_kind(spec.kind)
    typed = kind.validate(spec.config)
    for stale in (CANCEL_FILE, RESULT_FILE):
        (ctx.run_dir / stale).unlink(missing_ok=True)
    handler = logging.FileHandler(ctx.run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        written = execute(ctx, kind, typed, parent=parent)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return written or {}


def _friendly(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, DGRError) else str(exc)
    if "out of memory" in str(exc).lower():
        text += " — try a smaller token budget / batch size, or a smaller model."
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m dgr_core.jobs run <run-dir>", file=sys.stderr)
        return 2
    return run(Path(argv[1]))
