"""Like-for-like joins in the safety-tax view: one eval signature per benchmark, evaluations of other settings
left out with the reason, every cell with its n, pooled intervals over seeds, and the refinement fallback rate."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_safety_tax import BASE, eval_run, save_dataset, train_run, write_run

from dgr_core.data.store import DatasetStore
from dgr_core.evaluate.signature import eval_signature
from dgr_core.models.loading import ModelSpec
from dgr_core.safety_tax import (
    FALLBACK_COLUMN,
    TOKENS_COLUMN,
    TRUNCATION_COLUMN,
    budget_curve,
    collect,
    results_cells,
    results_table,
    scatter_frame,
)

GREEDY = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 256, "seed": 0}
SAMPLED = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768, "seed": 0}


def _sig(n_items: int, generation: dict, samples: int) -> dict:
    return eval_signature(benchmark="math500", kind="reasoning", item_ids=[f"m{i}" for i in range(n_items)],
                          generation=generation, samples=samples, judge="math-verify-0.9.0+rules-v1")


def _eval(ws, run_id: str, ref: str, value: float, sig: dict, created_at: str, **extra) -> None:
    n = sig["n_items"] * sig["decoding"]["samples"]
    m = {"kind": "reasoning", "metric": "accuracy", "value": value, "ci": [value - 0.1, value + 0.1], "n": n,
         "n_total": n, "signature": sig, "truncation_rate": 0.25, "mean_reasoning_tokens": 900.0, **extra}
    config = {"model": ModelSpec(ref).to_dict(), "backend": "fake"}
    write_run(ws, run_id, "evaluate", config, {"model": config["model"], "metrics": {"math500": m}},
              created_at=created_at)


@pytest.fixture
def two_settings(ws):
    """One training run; the base model evaluated on 100 items with the reasoning protocol (k=4), the trained
    model on 10 items greedy."""
    save_dataset(ws, "star", 4)
    train_run(ws, "20250102-000000-train-r1", "star", ["star-0", "star-1"], 0)
    _eval(ws, "20250103-000000-eval-base", BASE, 0.60, _sig(100, SAMPLED, 4), "2025-01-03T00:00:00+00:00")
    _eval(ws, "20250103-000001-eval-trained", "run:20250102-000000-train-r1", 1.00, _sig(10, GREEDY, 1),
          "2025-01-03T00:00:01+00:00")
    return ws


def test_a_10_item_greedy_evaluation_never_sits_beside_a_100_item_sampled_one(two_settings):
    data = collect(two_settings, backend="fake")
    table = results_table(data)
    values = table["math500"].tolist()
    assert sum(not math.isnan(v) for v in values) == 1  # one of the two, never both
    assert data.settings["math500"]["n_items"] in (10, 100)
    (left_out,) = data.excluded
    assert left_out["benchmark"] == "math500"
    assert "items: 10" in left_out["why"] or "items: 100" in left_out["why"]
    assert "decoding: greedy" in left_out["why"] or "decoding: reasoning" in left_out["why"]
    assert "budget" in left_out["why"]
    assert left_out["run"] in data.excluded_message()
    assert data.records[0].trained == {} or data.records[0].base == {}


def test_the_same_setting_joins_and_is_preferred_where_trained_runs_have_it(two_settings):
    ws = two_settings
    _eval(ws, "20250103-000002-eval-trained-full", "run:20250102-000000-train-r1", 0.55, _sig(100, SAMPLED, 4),
          "2025-01-03T00:00:02+00:00")
    data = collect(ws, backend="fake")
    assert data.settings["math500"]["n_items"] == 100 and data.settings["math500"]["decoding"]["samples"] == 4
    table = results_table(data)
    assert table["math500"].tolist() == pytest.approx([60.0, 55.0])
    assert data.excluded == []  # the trained model's greedy run is simply not the chosen setting: both have it
    (rec,) = data.records
    assert rec.trained["math500"].run_id.endswith("trained-full") and rec.base["math500"].n == 400


def test_a_chosen_setting_can_be_asked_for(two_settings):
    ws = two_settings
    greedy = _sig(10, GREEDY, 1)["key"]
    data = collect(ws, backend="fake", settings={"math500": greedy})
    assert data.settings["math500"]["key"] == greedy
    assert results_table(data)["math500"].isna().tolist() == [True, False]  # base row empty, trained row kept
    assert "items: 100" in data.excluded[0]["why"]


def test_budget_curve_and_scatter_use_the_same_join(two_settings):
    data = collect(two_settings, backend="fake")
    curve = budget_curve(data)
    reasoning = curve[curve["measure"] == "reasoning_avg"]
    if data.settings["math500"]["n_items"] == 100:
        assert reasoning.empty  # the trained model has no evaluation under the chosen setting
    else:
        assert reasoning["mean"].tolist() == [100.0]
    assert scatter_frame(data, "nll_total", "reasoning_avg").empty  # no shift scores planted here


def test_cells_show_value_interval_and_n(two_settings):
    ws = two_settings
    _eval(ws, "20250103-000002-eval-trained-full", "run:20250102-000000-train-r1", 0.55, _sig(100, SAMPLED, 4),
          "2025-01-03T00:00:02+00:00")
    data = collect(ws, backend="fake")
    cells = results_cells(data)
    assert cells["math500"].tolist() == ["60.0 [50.0, 70.0] n=400", "55.0 [45.0, 65.0] n=400"]
    table = results_table(data)
    assert table[TRUNCATION_COLUMN].tolist() == [25.0, 25.0] and table[TOKENS_COLUMN].tolist() == [900.0, 900.0]


def test_several_seeds_get_a_pooled_cluster_interval_from_their_outputs(ws):
    """Two training seeds evaluated by the real evaluate job: the row's interval pools both runs' per-item
    outcomes (cluster bootstrap), n counts both."""
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, run_evaluation
    from dgr_core.jobs import manager
    from dgr_core.jobs.context import JobContext

    save_dataset(ws, "star", 4)
    for seed in (0, 1):
        run_id = f"20250102-00000{seed}-train-s{seed}"
        train_run(ws, run_id, "star", ["star-0", "star-1"], seed)
        cfg = EvalConfig(model=ModelSpec(f"run:{run_id}"), backend="fake", limit=8, arithmetic_levels=[1],
                         benchmarks=[BenchmarkSource("arithmetic")], generation=GenerationConfig(max_new_tokens=64))
        run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name=f"eval {seed}")
        JobContext(run_dir, ws).write_result(run_evaluation(cfg, ws, run_dir))
        JobContext(run_dir, ws).set_status("done")
    data = collect(ws, backend="fake")
    assert data.excluded == []
    cell = results_cells(data).loc[1, "arithmetic"]
    assert cell.endswith("n=16") and "[" in cell


def test_a_refined_run_shows_its_fallback_rate(ws):
    store = DatasetStore(ws)
    save_dataset(ws, "star", 4)
    refined = store.load("star").assign(parent_id=lambda d: d["id"], fell_back=[True, False, False, False])
    store.save("star-dgr", refined, origin="refine:x", parent="star")
    train_run(ws, "20250102-000000-train-v", "star", ["star-0", "star-1"], 0)
    train_run(ws, "20250102-000001-train-r", "star-dgr", ["star-0", "star-1"], 0)
    for run in ("v", "r"):
        eval_run(ws, f"20250103-00000{run}-eval", f"run:20250102-00000{'0' if run == 'v' else '1'}-train-{run}",
                 {"math500": ("reasoning", 0.5)})
    data = collect(ws, backend="fake")
    table = results_table(data).set_index("method")
    assert table.loc["SFT on refined", FALLBACK_COLUMN] == 50.0  # star-0 fell back, star-1 did not
    assert pd.isna(table.loc["SFT", FALLBACK_COLUMN])
    frame = {r.variant: r.fallback_rate for r in data.records}
    assert frame == {"original": None, "refined": 0.5}
