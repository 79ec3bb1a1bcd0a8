"""One model identity: the page's handle (no weights loaded) keys the score cache exactly as the loaded backend
does, also for a `run:<id>` model (whose identity carries the run and its base model) — so a trained model's
scores, written by a real `score` job, show on the Shift page."""

from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_app_shift import PAGE, _ok, _table
from test_shift_analysis import frames

from dgr_core.backends.base import describe_model, get_backend
from dgr_core.data.store import DatasetStore
from dgr_core.jobs import manager, worker
from dgr_core.jobs.results import read_result
from dgr_core.models.loading import ModelSpec, pick_device_dtype
from dgr_core.scoring.api import ScoreConfig, op_meta
from dgr_core.scoring.cache import op_key
from dgr_core.scoring.job import ScoreJobConfig
from dgr_core.shift import analysis as A


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores
    yield
    torch.set_num_threads(old)


def _train_run(ws, tiny_model_dir) -> str:
    cfg = {"dataset": "own", "model": {"ref": str(tiny_model_dir), "device": "cpu"},
           "subset": {"strategy": "random", "n": 4}, "train": {"epochs": 1, "batch_size": 2, "lora_r": 4}}
    run = manager.create_run(ws, "train", cfg, name="tiny-sft")
    assert worker.run(run) == 0, manager.status(run)
    return run.name


def test_describe_equals_the_loaded_backend_for_a_plain_model(ws, tiny_model_dir):
    spec, cfg = ModelSpec(str(tiny_model_dir), device="cpu"), ScoreConfig()
    described = describe_model(spec, "hf", ws)
    assert op_meta(described.identity, cfg) == op_meta(get_backend("hf", spec, ws).identity(), cfg)


def test_a_trained_models_scores_show_on_the_shift_page(ws, tiny_model_dir):
    store = DatasetStore(ws)
    for name, df in frames(6).items():
        store.save(name, df, origin="test")
    spec = ModelSpec(f"run:{_train_run(ws, tiny_model_dir)}", device="cpu")
    cfg = ScoreConfig(model=spec, backend="hf")  # what the page builds from the sidebar
    for name in ("own", "external"):  # the real score job, in this process
        run = manager.create_run(ws, "score", ScoreJobConfig(name, cfg).to_dict())
        assert worker.run(run) == 0, manager.status(run)
    written = read_result(run).op_key
    assert manager.get_run(ws, run.name).result().op_key == written

    handle = A.model_handle(spec, "hf", ws)  # what the Shift page computes: no weights loaded
    assert handle.identity["run"] == spec.ref.removeprefix("run:") and handle.identity["base"]
    assert op_key(A.score_meta(handle, cfg)) == written
    assert op_meta(get_backend("hf", spec, ws).identity(), cfg) == A.score_meta(handle, cfg)
    assert A.load_scored_set(ws, "external", cfg, handle) is not None

    at = AppTest.from_file(PAGE, default_timeout=120)
    for key, value in {"backend": "hf", "target_model": spec, "shift_tab": "Shift statistics",
                       "shift_datasets": ["own", "external"]}.items():
        at.session_state[key] = value
    at.run()
    _ok(at)
    assert not [w.value for w in at.warning]
    assert len(_table(at, "statistic")) > 0


def test_vllm_describes_a_model_without_vllm(ws, tiny_model_dir):
    """The vllm backend's identity comes from the same function (weights hash included), so a vLLM score cache of
    a local folder or a run is found too; describing needs no vLLM engine (nor vLLM installed)."""
    spec = ModelSpec(str(tiny_model_dir))
    vllm, hf = describe_model(spec, "vllm", ws).identity, describe_model(spec, "hf", ws).identity
    device, _ = pick_device_dtype(spec.device, spec.dtype)
    assert vllm["backend"] == "vllm" and vllm["device_kind"] == device.split(":")[0]  # the real device, cpu here
    assert vllm["weights_hash"] == hf["weights_hash"] and vllm["ref"] == hf["ref"]
