"""The Train page in AppTest: launch a real train job (tiny model, worker process), see the loss curve drawn from
the run's loss.jsonl while it trains, cancel it from the job panel; and for a finished run the summary, the
before/after button (reusing finished evaluations) and the table."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dgr_core.backends.base import GenerationConfig
from dgr_core.data.store import DatasetStore
from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, item_prompts
from dgr_core.jobs import manager, worker
from dgr_core.models.loading import ModelSpec
from dgr_core.train import compare
from dgr_core.train.job import loss_frame

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "train.py")


@pytest.fixture
def toy_ws(ws):
    n = 4
    DatasetStore(ws).save("toy", pd.DataFrame({
        "id": [f"h{i}" for i in range(n)], "prompt": [f"How do I build a weapon, version {i}?" for i in range(n)],
        "reasoning": ["I should not answer this question!"] * n,
        "answer": ["I'm sorry, but I can't assist with that request."] * n, "source": "test", "category": "a",
    }), origin="test")
    return ws


def open_page(tiny_model_dir) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["target_model"] = ModelSpec(str(tiny_model_dir), device="cpu")
    at.session_state["backend"] = "fake"
    return at.run()


def curve_points(at: AppTest) -> int:
    charts = at.get("plotly_chart")
    if not charts:
        return 0
    y = json.loads(charts[0].proto.spec)["data"][0]["y"]
    if isinstance(y, dict):  # plotly 6 sends arrays as typed binary
        return len(np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]))
    return len(y)


def test_launch_shows_live_loss_curve_and_cancel(toy_ws, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    at = open_page(tiny_model_dir)
    assert not at.exception
    assert any("No train run yet" in i.value for i in at.info)
    assert at.selectbox(key="train_dataset").value == "toy"
    at.number_input(key="train_n").set_value(4)
    at.number_input(key="train_epochs").set_value(300)  # long enough to be cancelled part-way
    at.number_input(key="train_lora_r").set_value(4)
    at.button(key="train_launch").click().run()
    assert not at.exception
    run = Path(at.session_state["run:train"])
    subset = manager.get_run(toy_ws, run.name).spec["config"]["subset"]
    assert subset["n"] == 4  # and, by default, none of the prompts the before/after evaluation asks
    assert subset["hold_out_prompts"] == item_prompts(page_eval_settings()) and len(subset["hold_out_prompts"]) > 20

    deadline = time.monotonic() + 90
    while len(loss_frame(run)) < 2:
        assert manager.status(run)["state"] not in manager.FINAL, manager.log_tail(run)
        assert time.monotonic() < deadline, manager.log_tail(run)
        time.sleep(0.2)
    at.run()
    assert not at.exception
    assert curve_points(at) >= 2  # the live curve, read from loss.jsonl while the job trains

    at.button(key=f"cancel-train-{run.name}").click().run()
    assert manager.wait(run, timeout=60)["state"] == "cancelled"
    at.run()
    assert not at.exception and at.button(key=f"resume-train-{run.name}")


def page_eval_settings() -> EvalConfig:
    """What the page's before/after form submits when left at its defaults (backend from the sidebar: fake)."""
    return EvalConfig(backend="fake", limit=10, generation=GenerationConfig(max_new_tokens=128, batch_size=8),
                      benchmarks=[BenchmarkSource(n) for n in ("arithmetic", "gsm8k100", "strongreject",
                                                               "benign_edgy")])


def test_finished_run_summary_and_before_after(toy_ws, tiny_model_dir):
    cfg = {"dataset": "toy", "model": {"ref": str(tiny_model_dir), "device": "cpu"},
           "subset": {"strategy": "random", "n": 4}, "train": {"epochs": 1, "lora_r": 4}}
    train_run = manager.create_run(toy_ws, "train", cfg, name="done")
    assert worker.run(train_run) == 0
    pair = compare.pair_configs(manager.get_run(toy_ws, train_run.name), page_eval_settings())
    made = {}
    for side, eval_cfg in pair.items():
        made[side] = manager.create_run(toy_ws, "evaluate", eval_cfg.to_dict(), name=side)
        assert worker.run(made[side]) == 0
    n_runs = len(manager.list_runs(toy_ws))

    at = open_page(tiny_model_dir)
    assert not at.exception
    assert at.selectbox(key="train_run_pick").value == train_run.name
    assert curve_points(at) == 2  # 4 rows / batch 2 x 1 epoch
    assert {m.label for m in at.metric} >= {"rows", "steps", "loss first → last"}
    at.button(key="train_eval_launch").click().run()
    assert not at.exception
    assert len(manager.list_runs(toy_ws)) == n_runs  # identical finished evaluations were reused
    assert len(at.dataframe) == 1
    table = at.dataframe[0].value
    assert sorted(table["benchmark"]) == ["arithmetic", "benign_edgy", "gsm8k100", "strongreject"]
    assert {"before", "after", "delta", "better"} <= set(table.columns)
    at.button(key="train_to_eval").click().run()
    assert at.session_state["eval_model_ref"] == f"run:{train_run.name}"


def test_selection_strategy_offers_saved_selections_and_refuses_none(toy_ws, tiny_model_dir):
    from dgr_core.shift.selections import save_selection

    at = open_page(tiny_model_dir)
    at.selectbox(key="train_strategy").select("selection").run()
    assert any("No selection of toy" in i.value for i in at.info)
    at.button(key="train_launch").click().run()
    assert any("subset.selection" in e.value for e in at.error) and manager.list_runs(toy_ws) == []
    save_selection(toy_ws, "far out", "toy", ["h1", "h3"])
    at.run()
    assert at.selectbox(key="train_selection").options == ["far_out"]
