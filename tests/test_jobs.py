"""The job contract: spec validation before any model loads, worker processes, progress, kill/cancel/resume,
crash -> failed, one model job at a time."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from dgr_core.data.store import DatasetStore
from dgr_core.errors import SpecError
from dgr_core.jobs import manager, worker
from dgr_core.jobs.context import PROGRESS_FILE, RESULT_FILE
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.spec import JobSpec, write_spec
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, score_dataset


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"s{i}" for i in range(n)],
        "prompt": [f"Question {i}: how do I bake bread number {i}?" for i in range(n)],
        "reasoning": [f"The user asks about bread {i}. " * (1 + i % 4) for i in range(n)],
        "answer": [f"Mix flour and water, then bake {i} minutes." for i in range(n)],
        "source": "test", "category": ["a", "b"][0:1] * n,
    })


def _score_config(**kw) -> dict:
    cfg = ScoreConfig(model=ModelSpec("fake"), backend="fake", **kw)
    return {"dataset": "d", "score": cfg.to_dict()}


@pytest.fixture
def data_ws(ws):
    DatasetStore(ws).save("d", _rows(60), origin="test")
    return ws


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model or a backend fails the test."""
    import dgr_core.backends.base as base
    import dgr_core.models.loading as loading

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    base.available_backends()  # import the backends first: patched names must not stay bound in them afterwards
    import dgr_core.backends.hf as hf

    monkeypatch.setattr(loading, "load_model", boom)
    monkeypatch.setattr(hf, "load_model", boom)
    monkeypatch.setattr(base, "get_backend", boom)


def _write_raw_spec(ws, name: str, raw) -> os.PathLike:
    run_dir = ws.runs / name
    run_dir.mkdir(parents=True)
    (run_dir / "job.json").write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return run_dir


@pytest.mark.parametrize("raw, needle", [
    ("{not json", "not valid JSON"),
    ({"config": {}}, "missing field(s) kind"),
    ({"kind": "score", "config": []}, "'config' must be an object"),
    ({"kind": "nope", "config": {}}, "nope"),
    ({"kind": "score", "config": {"dataset": ""}}, "config.dataset"),
    ({"kind": "score", "config": {"dataset": "d", "score": {"backend": "quantum"}}}, "unknown backend"),
    ({"kind": "score", "config": {"dataset": "d", "score": {"bogus_field": 1}}}, "config.score.bogus_field"),
    # every kind: an unknown key or a wrong type fails naming the field, before any model loads
    ({"kind": "score", "config": {"dataset": "d", "typo": 1}}, "unknown key(s) config.typo"),
    ({"kind": "score", "config": {"dataset": "d", "score": {"max_length": "64"}}}, "config.score.max_length"),
    ({"kind": "train", "config": {"dataset": "d", "subset": {"nn": 3}}}, "config.subset.nn"),
    ({"kind": "refine", "config": {"dataset": "d", "generation": {"temprature": 1}}},
     "config.generation.temprature"),
    ({"kind": "evaluate", "config": {"model": {"ref": "demo", "revison": "x"}}}, "config.model.revison"),
    ({"kind": "demo", "config": {"n_refin": 3}}, "config.n_refin"),
    ({"kind": "project", "config": {"datasets": ["a"], "methd": "pca"}}, "config.methd"),
    ({"kind": "embed_sentences", "config": {"datasets": ["a"], "column": "text"}}, "config.column"),
])
def test_malformed_spec_fails_before_any_model_is_loaded(data_ws, no_model, raw, needle):
    run_dir = _write_raw_spec(data_ws, "bad", raw)
    assert worker.run(run_dir) == 2
    st = manager.status(run_dir)
    assert st["state"] == "failed" and needle in st["error"]


def test_create_run_rejects_a_bad_config_without_writing_a_run(data_ws):
    with pytest.raises(SpecError, match="unknown backend"):
        manager.create_run(data_ws, "score", {"dataset": "d", "score": {"backend": "quantum"}})
    assert manager.list_runs(data_ws) == []


def test_missing_dataset_fails_with_its_name_before_the_model_loads(data_ws, no_model):
    run_dir = manager.create_run(data_ws, "score", {**_score_config(), "dataset": "not-there"})
    assert worker.run(run_dir) == 1
    st = manager.status(run_dir)
    assert st["state"] == "failed" and "not-there" in st["error"]
    assert not (run_dir / RESULT_FILE).exists()


def test_crash_becomes_failed_with_error_and_traceback(data_ws):
    def explode(config, ctx):
        ctx.progress({"done": 1, "total": 2})
        raise RuntimeError("CUDA out of memory while doing something")

    from dgr_core.jobs.results import ProjectResult
    from dgr_core.shift.job import EmbedConfig

    register_kind(JobKind("test-explode", EmbedConfig, ProjectResult, explode, uses_model=False))
    run_dir = data_ws.runs / "crash"
    run_dir.mkdir(parents=True)
    write_spec(run_dir, JobSpec(kind="test-explode", config={"datasets": ["d"]}, workspace=str(data_ws.root)))
    assert worker.run(run_dir) == 1
    st = manager.status(run_dir)
    assert st["state"] == "failed"
    assert "out of memory" in st["error"] and "smaller" in st["error"]  # says what to try
    assert "RuntimeError" in st["traceback"]
    assert not (run_dir / RESULT_FILE).exists()
    assert manager.progress_events(run_dir)[0]["done"] == 1


def test_score_job_in_a_worker_process_writes_the_contract_files(data_ws):
    run_dir = manager.submit(data_ws, "score", _score_config(chunk_size=16))
    st = manager.wait(run_dir, timeout=120)
    assert st["state"] == "done", manager.log_tail(run_dir)
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert result["n"] == 60 and result["computed"] == 60
    events = manager.progress_events(run_dir)
    assert events[-1]["done"] == 60 and any("tokens_per_s" in e for e in events)
    assert json.loads((run_dir / "job.json").read_text())["versions"]["python"]
    # The same work again is a cache hit.
    again = manager.submit(data_ws, "score", _score_config(chunk_size=16))
    assert manager.wait(again, timeout=120)["state"] == "done"
    assert json.loads((again / RESULT_FILE).read_text())["computed"] == 0


def _wait_for_chunks(run_dir, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(e.get("message") == "chunk cached" for e in manager.progress_events(run_dir)) >= n:
            return
        assert manager.status(run_dir)["state"] not in manager.FINAL, manager.log_tail(run_dir)
        time.sleep(0.05)
    raise AssertionError("the job made no progress")


def test_killed_job_resumes_from_finished_chunks_with_the_same_numbers(data_ws, monkeypatch):
    monkeypatch.setenv("DGR_FAKE_DELAY_S", "0.1")
    config = _score_config(chunk_size=6, token_budget=1)  # one sample per batch, 0.1 s each
    run_dir = manager.submit(data_ws, "score", config)
    _wait_for_chunks(run_dir, 2)
    pid = manager.status(run_dir)["pid"]
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # no chance to clean up: like the OOM killer
    deadline = time.monotonic() + 10
    while manager.status(run_dir)["state"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    st = manager.status(run_dir)
    assert st["state"] == "failed" and "Resume" in st["error"]

    monkeypatch.setenv("DGR_FAKE_DELAY_S", "0")
    manager.resume(run_dir)
    assert manager.wait(run_dir, timeout=120)["state"] == "done", manager.log_tail(run_dir)
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert 0 < result["computed"] <= 60 - 12  # at least the two finished chunks were reused

    resumed = score_dataset(data_ws, "d", ScoreConfig.from_dict(config["score"]))
    assert resumed.computed == 0  # everything is cached now
    fresh_ws = type(data_ws)(data_ws.root.parent / "fresh")
    DatasetStore(fresh_ws).save("d", _rows(60), origin="test")
    fresh = score_dataset(fresh_ws, "d", ScoreConfig.from_dict(config["score"]))
    cols = ["nll_reasoning", "nll_answer", "nll_total", "n_tokens_total"]
    pd.testing.assert_frame_equal(resumed.table[cols], fresh.table[cols])
    for sid in ("s0", "s31", "s59"):
        np.testing.assert_array_equal(resumed.arrays(sid).logprobs, fresh.arrays(sid).logprobs)


def test_cancel_stops_the_job_and_resume_finishes_it(data_ws, monkeypatch):
    monkeypatch.setenv("DGR_FAKE_DELAY_S", "0.1")
    run_dir = manager.submit(data_ws, "score", _score_config(chunk_size=6, token_budget=1))
    _wait_for_chunks(run_dir, 1)
    manager.cancel(run_dir)
    st = manager.wait(run_dir, timeout=30)
    assert st["state"] == "cancelled" and "cached" in st["error"]
    monkeypatch.setenv("DGR_FAKE_DELAY_S", "0")
    manager.resume(run_dir)
    assert manager.wait(run_dir, timeout=120)["state"] == "done"


def test_a_second_model_job_waits_for_the_device(data_ws):
    lock = open(data_ws.runs / ".device.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another model job holds the device
    try:
        run_dir = manager.submit(data_ws, "score", _score_config())
        deadline = time.monotonic() + 60
        while manager.status(run_dir)["state"] != "waiting" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.status(run_dir)["state"] == "waiting"
        time.sleep(0.5)
        assert not (run_dir / PROGRESS_FILE).exists()  # nothing ran while waiting
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    assert manager.wait(run_dir, timeout=120)["state"] == "done"


def test_resume_refuses_a_running_job_and_list_skips_broken_folders(data_ws, monkeypatch):
    monkeypatch.setenv("DGR_FAKE_DELAY_S", "0.1")
    run_dir = manager.submit(data_ws, "score", _score_config(token_budget=1))
    _wait_for_chunks(run_dir, 0)
    with pytest.raises(Exception, match="still"):
        manager.resume(run_dir)
    manager.cancel(run_dir)
    manager.wait(run_dir, timeout=30)
    broken = data_ws.runs / "broken"
    broken.mkdir()
    (broken / "job.json").write_text("{oops")
    assert [r.id for r in manager.list_runs(data_ws)] == [run_dir.name]


def test_worker_env_defaults_yield_to_the_users_settings(monkeypatch):
    """Workers sleep their OpenMP threads and cap oneDNN's primitive cache, unless the user set those variables."""
    from dgr_core.jobs.manager import WORKER_ENV_DEFAULTS, _worker_env

    for key in WORKER_ENV_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    env = _worker_env()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "32"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")
    assert _worker_env()["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "1024" and _worker_env()["PYTHONUNBUFFERED"] == "1"
