"""Jobs that survive anything: process identity before trusting or signalling a pid, cancel that escalates to
SIGKILL, a dead worker shown as failed, a fast failure never reported as "process died", JSON Lines repaired
after a torn write, a concurrent resume refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError, ModelLoadError
from dgr_core.jobs import manager, proc
from dgr_core.jobs.context import CANCEL_FILE, STATUS_FILE
from dgr_core.models.loading import ModelSpec, resolve_model_path
from dgr_core.scoring.api import ScoreConfig
from dgr_core.workspace import append_jsonl, atomic_write_json, read_jsonl, repair_jsonl


def _score_config(dataset: str = "d") -> dict:
    return {"dataset": dataset, "score": ScoreConfig(model=ModelSpec("fake"), backend="fake").to_dict()}


@pytest.fixture
def data_ws(ws):
    rows = pd.DataFrame({"id": [f"s{i}" for i in range(8)], "prompt": [f"q {i}" for i in range(8)],
                         "reasoning": ["r"] * 8, "answer": ["a"] * 8, "source": "t", "category": "c"})
    DatasetStore(ws).save("d", rows, origin="test")
    return ws


def _wait(pred, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_identity_tells_a_reused_pid_from_ours():
    me = proc.identity(os.getpid())
    assert me and proc.alive(os.getpid(), me) and proc.alive(os.getpid())
    assert not proc.alive(os.getpid(), "another-boot:1")  # same pid, another process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not proc.alive(child.pid)


def test_a_stale_pid_after_a_restart_is_failed_not_running_and_never_signalled(ws):
    run_dir = manager.create_run(ws, "score", _score_config())
    # The status a worker left before a reboot: its pid is now another process (here: this test itself).
    atomic_write_json(run_dir / STATUS_FILE, {"state": "running", "pid": os.getpid(), "pid_identity": "old:1"})
    st = manager.status(run_dir)
    assert st["state"] == "failed" and "died" in st["error"]
    manager.cancel(run_dir, block=True, grace_s=0.1)  # would SIGTERM this test's group if it trusted the pid
    assert manager.status(run_dir)["state"] == "cancelled"


def test_cancel_escalates_to_sigkill_of_the_group(ws):
    run_dir = manager.create_run(ws, "score", _score_config())
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)"],
                                start_new_session=True)
    time.sleep(0.3)
    atomic_write_json(run_dir / STATUS_FILE, {"state": "running", "pid": stubborn.pid,
                                              "pid_identity": proc.identity(stubborn.pid)})
    start = time.monotonic()
    manager.cancel(run_dir, grace_s=1.0, block=True)
    assert stubborn.wait(timeout=10) == -signal.SIGKILL and time.monotonic() - start < 5
    assert manager.status(run_dir)["state"] == "cancelled"


def test_worker_watchdog_kills_a_job_stuck_past_the_grace(data_ws, monkeypatch):
    monkeypatch.setenv("DGR_FAKE_DELAY_S", "60")  # one batch never ends in time: only SIGKILL stops it
    monkeypatch.setenv("DGR_CANCEL_GRACE_S", "1")
    run_dir = manager.submit(data_ws, "score", _score_config())
    _wait(lambda: manager.status(run_dir)["state"] == "running")
    time.sleep(1)
    (run_dir / CANCEL_FILE).touch()  # as a cancel from a CLI that exited at once: no one escalates but the worker
    _wait(lambda: manager.status(run_dir)["state"] in manager.FINAL, timeout=30)
    st = manager.status(run_dir)
    assert st["state"] == "cancelled" and "by force" in st["error"]


def test_a_fast_failure_keeps_its_own_error(data_ws):
    for _ in range(5):
        run_dir = manager.submit(data_ws, "score", _score_config("no-such-dataset"))
        st = manager.wait(run_dir, timeout=120)
        assert st["state"] == "failed" and "no-such-dataset" in st["error"] and "died" not in st["error"]


def test_a_second_resume_is_refused(data_ws, monkeypatch):
    monkeypatch.setenv("DGR_FAKE_DELAY_S", "0.5")
    run_dir = manager.create_run(data_ws, "score", _score_config())
    atomic_write_json(run_dir / STATUS_FILE, {"state": "failed", "error": "x"})
    manager.resume(run_dir)
    with pytest.raises(DGRError, match="still"):
        manager.resume(run_dir)
    manager.cancel(run_dir, block=True, grace_s=5)


def test_jsonl_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "hal')  # killed mid-write
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    append_jsonl(path, {"a": 4})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert path.read_text().endswith('{"a": 4}\n') and repair_jsonl(path) == 0
    (tmp_path / "one.jsonl").write_text("x" * 100_000)  # a single torn line and no newline at all
    assert repair_jsonl(tmp_path / "one.jsonl") == 100_000 and (tmp_path / "one.jsonl").read_bytes() == b""


@pytest.mark.parametrize("ref", ["owner/..", "../x", "a/../b", "..", "a..b/c"])
def test_hub_ids_with_dot_dot_are_refused(ws, ref):
    with pytest.raises(ModelLoadError):
        resolve_model_path(ref, ws)


@pytest.mark.parametrize("ref", ["run:..", "run:../runs", "run:.hidden", "run:a/b"])
def test_run_refs_cannot_leave_the_runs_folder(ws, ref):
    (ws.runs / ".hidden").mkdir()
    with pytest.raises(ModelLoadError, match="there is no run"):
        resolve_model_path(ref, ws)


def test_weights_memo_is_written_atomically_and_a_torn_one_is_recomputed(tmp_path):
    from dgr_core.models.loading import weights_hash
    from dgr_core.workspace import Workspace

    ws = Workspace(tmp_path / "own")  # its own models folder: the `ws` fixture shares the real one
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    first = weights_hash(folder, ws)
    (memo,) = (ws.models / ".weights-hash").iterdir()
    memo.write_text(first[:5])  # torn by an old, non-atomic write
    assert weights_hash(folder, ws) == first and memo.read_text() == first
    assert [p.name for p in (ws.models / ".weights-hash").iterdir()] == [memo.name]  # no temp file left
