"""The safety-tax core on run folders written by hand (job.json, status.json, result.json, loss.jsonl,
outputs.jsonl) with planted numbers, so these tests never depend on the train / evaluate jobs' timing.

`plant_workspace` is also used by the report and page tests: one base model ("base-a", scores from the fake
backend), an original dataset "star" and its refinement "star-dgr", 8 training runs (original / refined x N 2, 4 x
seeds 0, 1), evaluate runs of every trained model and of the base model, and planted per-sample NLLs in the score
cache. The trained models' reasoning accuracy is planted as an exact linear function of their training data's mean
NLL, so the fit must find r = 1.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dgr_core.data.store import DatasetStore
from dgr_core.jobs.results import parse_result
from dgr_core.models.loading import ModelSpec
from dgr_core.safety_tax import (
    DELTA_COLUMN,
    SHIFT_STATS,
    TAIL_COLUMNS,
    budget_curve,
    collect,
    fit_line,
    format_table,
    results_table,
    scatter_frame,
    y_value,
)
from dgr_core.scoring.api import ScoreConfig, op_meta, text_hash
from dgr_core.scoring.cache import SampleArrays, ScoreStore, sample_key
from dgr_core.workspace import Workspace, atomic_write_json

BASE = "base-a"
BASE_METRICS = {"math500": ("reasoning", 0.60), "gsm8k100": ("reasoning", 0.50),
                "strongreject": ("harmful", 0.20), "xstest": ("benign", 0.04)}
METRIC_OF_KIND = {"reasoning": "accuracy", "harmful": "refusal_rate", "benign": "over_refusal_rate"}
# Planted per-sample total NLL: the original data lies further from the model than its refinement.
NLL = {"star": [3.0, 2.6, 2.2, 1.8, 2.4, 2.8], "star-dgr": [1.2, 1.0, 1.4, 0.8, 1.1, 0.9],
       "selfgen": [0.7, 0.5, 0.6, 0.8]}
SLOPE, INTERCEPT = -0.10, 0.80  # planted: accuracy = INTERCEPT + SLOPE * mean total NLL of the training samples


# ---------------------------------------------------------------------------------------------------------------
# Planting
# ---------------------------------------------------------------------------------------------------------------


def write_run(ws: Workspace, run_id: str, kind: str, config: dict[str, Any], result: dict[str, Any] | None, *,
              state: str = "done", created_at: str = "2025-01-01T00:00:00+00:00", check: bool = True) -> Path:
    """A run folder as the job system writes it. A planted result must read back through the kind's Result type
    (dgr_core.jobs.results), as the worker's does; `check=False` plants a broken one."""
    if result is not None and check:
        parse_result(kind, result)  # ConfigError naming the field: the planted result has drifted from the type
    run = ws.runs / run_id
    run.mkdir(parents=True)
    atomic_write_json(run / "job.json", {"kind": kind, "config": config, "id": run_id[-8:], "created_at": created_at,
                                         "name": run_id, "workspace": str(ws.root),
                                         "versions": {"python": "3.11", "dgr-lens": "0.1.0"}, "schema": 1})
    atomic_write_json(run / "status.json", {"state": state, "created_at": created_at})
    (run / "progress.jsonl").write_text(json.dumps({"done": 1, "total": 1}) + "\n")
    (run / "log.txt").write_text("planted\n")
    if kind == "train":
        (run / "loss.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "epoch": 0}) + "\n"
                                                for s in (1, 2, 3)))
    if kind == "evaluate" and result:
        (run / "outputs.jsonl").write_text("".join(json.dumps({"benchmark": b, "id": "1", "response": "…"}) + "\n"
                                                   for b in result["metrics"]))
    if result is not None:
        atomic_write_json(run / "result.json", result)
    return run


def save_dataset(ws: Workspace, name: str, n: int, *, parent: str | None = None, origin: str = "file.jsonl") -> None:
    df = pd.DataFrame({"id": [f"{name}-{i}" for i in range(n)],
                       "prompt": [f"prompt {i} of {name}" for i in range(n)],
                       "reasoning": [f"reasoning {i} of {name}" for i in range(n)],
                       "answer": [f"answer {i} of {name}" for i in range(n)],
                       "source": name, "category": "harm", "think_status": "closed"})
    DatasetStore(ws).save(name, df, origin=origin, parent=parent)


def plant_scores(ws: Workspace, name: str, nll: list[float], *, base: str = BASE, **settings: Any) -> str:
    """Per-sample NLLs of a dataset in the fake backend's score cache, as `score_frame` would have written them."""
    from dgr_core.backends.fake import FakeBackend

    cfg = ScoreConfig(model=ModelSpec(base), backend="fake", **settings)
    store = ScoreStore(ws.scores, op_meta(FakeBackend(cfg.model, ws).identity(), cfg))
    rows = DatasetStore(ws).load(name).to_dict("records")
    table = pd.DataFrame({"sample_key": [sample_key(store.key, text_hash(r)) for r in rows],
                          "nll_total": nll, "nll_reasoning": [v + 0.5 for v in nll],
                          "nll_answer": [v - 0.5 for v in nll], "truncated": False})
    one = np.zeros(1)
    store.add_chunk(table, [SampleArrays(one.astype(np.int32), one, one.astype(np.int32), one.astype(np.int8),
                                         np.zeros(4, np.float32)) for _ in rows])
    return store.key


def metrics(values: dict[str, tuple[str, float]]) -> dict[str, Any]:
    return {b: {"kind": k, "metric": METRIC_OF_KIND[k], "value": v, "ci": [max(0, v - 0.1), min(1, v + 0.1)],
                "n": 50, "n_truncated": 0, "n_no_answer": 0} for b, (k, v) in values.items()}


def eval_run(ws: Workspace, run_id: str, model_ref: str, values: dict[str, tuple[str, float]], **kw: Any) -> Path:
    config = {"model": ModelSpec(model_ref).to_dict(), "backend": "fake", "benchmarks": list(values), "limit": 50,
              "seed": 0, "generation": {}, "judge": "keyword"}
    result = {"model": config["model"], "model_label": model_ref, "metrics": metrics(values), "judge": "keyword",
              "generation": {}, "seconds": 1.0}
    return write_run(ws, run_id, "evaluate", config, result, **kw)


def train_run(ws: Workspace, run_id: str, dataset: str, ids: list[str], seed: int, *, base: str = BASE,
              created_at: str = "2025-01-02T00:00:00+00:00") -> Path:
    config = {"model": ModelSpec(base).to_dict(), "dataset": dataset,
              "subset": {"strategy": "random", "n": len(ids), "seed": seed, "category": None, "selection": None},
              "train": {"method": "lora", "learning_rate": 0.001, "epochs": 3, "seed": seed}}
    result = {"base_model": ModelSpec(base).to_dict(), "model_ref": f"run:{run_id}", "method": "lora",
              "dataset": dataset, "dataset_fingerprint": DatasetStore(ws).info(dataset).fingerprint,
              "subset": config["subset"], "sample_ids": ids, "n_samples": len(ids), "steps": 3, "final_loss": 0.7,
              "first_loss": 2.0, "seconds": 1.0, "train": config["train"]}
    return write_run(ws, run_id, "train", config, result, created_at=created_at)


def training_ids(dataset: str, n: int, seed: int) -> list[str]:
    return [f"{dataset}-{i}" for i in np.random.default_rng(seed).permutation(len(NLL[dataset]))[:n]]


def planted_accuracy(dataset: str, ids: list[str]) -> float:
    mean_nll = float(np.mean([NLL[dataset][int(i.rsplit("-", 1)[1])] for i in ids]))
    return INTERCEPT + SLOPE * mean_nll


def plant_workspace(ws: Workspace, *, scores: bool = True) -> dict[str, Any]:
    """The scenario of the module docstring; returns what a test needs to check against."""
    save_dataset(ws, "star", 6)
    save_dataset(ws, "star-dgr", 6, parent="star", origin="refine:20250101-000000-refine-abcd1234")
    save_dataset(ws, "selfgen", 4, origin="demo:self")
    if scores:
        for name, nll in NLL.items():
            plant_scores(ws, name, nll)
    runs: dict[str, dict[str, Any]] = {}
    for dataset in ("star", "star-dgr"):
        for n in (2, 4):
            for seed in (0, 1):
                run_id = f"20250102-00000{seed}-train-{dataset}-n{n}-s{seed}"
                ids = training_ids(dataset, n, seed)
                train_run(ws, run_id, dataset, ids, seed)
                acc = planted_accuracy(dataset, ids)
                refusal = 0.9 if dataset == "star" else 0.85
                eval_run(ws, f"20250103-000000-eval-{run_id}", f"run:{run_id}",
                         {"math500": ("reasoning", acc), "gsm8k100": ("reasoning", acc),
                          "strongreject": ("harmful", refusal), "xstest": ("benign", 0.1)},
                         created_at="2025-01-03T00:00:00+00:00")
                runs[run_id] = {"dataset": dataset, "n": n, "seed": seed, "ids": ids, "acc": acc,
                                "refusal": refusal}
    # The base model: an old evaluation with other numbers (must lose), the current one, and a failed one.
    eval_run(ws, "20241231-000000-eval-base-old", BASE, {b: (k, 0.05) for b, (k, _) in BASE_METRICS.items()},
             created_at="2024-12-31T00:00:00+00:00")
    eval_run(ws, "20250101-000000-eval-base", BASE, BASE_METRICS, created_at="2025-01-01T00:00:00+00:00")
    eval_run(ws, "20250104-000000-eval-base-failed", BASE, {"math500": ("reasoning", 0.99)}, state="failed",
             created_at="2025-01-04T00:00:00+00:00")
    return runs


@pytest.fixture
def planted(ws):
    return ws, plant_workspace(ws)


# ---------------------------------------------------------------------------------------------------------------
# collect: the join
# ---------------------------------------------------------------------------------------------------------------


def test_collect_joins_trained_and_base_metrics(planted):
    ws, runs = planted
    data = collect(ws, backend="fake")
    assert {r.run_id for r in data.records} == set(runs)
    for rec in data.records:
        want = runs[rec.run_id]
        assert rec.trained["math500"].value == pytest.approx(want["acc"])
        assert rec.trained["strongreject"].value == pytest.approx(want["refusal"])
        assert rec.n_samples == want["n"] and rec.seed == want["seed"] and rec.sample_ids == want["ids"]
        # latest finished base evaluation wins: not the older one, not the failed newer one
        assert {b: r.value for b, r in rec.base.items()} == {b: v for b, (_, v) in BASE_METRICS.items()}
    assert list(data.benchmarks) == ["strongreject", "xstest", "gsm8k100", "math500"]


def test_collect_detects_refined_and_source(planted):
    ws, runs = planted
    data = collect(ws, backend="fake")
    for rec in data.records:
        assert rec.refined == (runs[rec.run_id]["dataset"] == "star-dgr")
        assert rec.source_dataset == "star"


def test_refined_detected_by_origin_alone(ws):
    save_dataset(ws, "by-origin", 3, origin="refine:some-run")
    train_run(ws, "r1", "by-origin", ["by-origin-0"], 0)
    (rec,) = collect(ws, backend="fake").records
    assert rec.refined and rec.source_dataset == "by-origin"


def test_latest_trained_evaluation_wins_per_benchmark(planted):
    ws, runs = planted
    run_id = next(iter(runs))
    eval_run(ws, "20250109-000000-eval-again", f"run:{run_id}", {"math500": ("reasoning", 0.123)},
             created_at="2025-01-09T00:00:00+00:00")
    rec = next(r for r in collect(ws, backend="fake").records if r.run_id == run_id)
    assert rec.trained["math500"].value == pytest.approx(0.123)
    assert rec.trained["gsm8k100"].value == pytest.approx(runs[run_id]["acc"])  # other benchmark untouched


def test_unfinished_train_runs_are_left_out(planted):
    ws, runs = planted
    write_run(ws, "20250105-000000-train-running", "train", {"model": {"ref": BASE}, "dataset": "star"}, None,
              state="running")
    assert {r.run_id for r in collect(ws, backend="fake").records} == set(runs)


def test_empty_workspace(ws):
    data = collect(ws)
    assert data.empty and data.y_choices() == [] and data.shift_choices() == []
    assert results_table(data).empty and budget_curve(data).empty
    assert scatter_frame(data, "nll_total", "reasoning_avg").empty


# ---------------------------------------------------------------------------------------------------------------
# collect: the shift of the training data
# ---------------------------------------------------------------------------------------------------------------


def test_shift_is_mean_nll_of_the_training_samples(planted):
    ws, runs = planted
    data = collect(ws, backend="fake")
    for rec in data.records:
        dataset, ids = runs[rec.run_id]["dataset"], runs[rec.run_id]["ids"]
        want = np.mean([NLL[dataset][int(i.rsplit("-", 1)[1])] for i in ids])
        assert rec.shift["nll_total"] == pytest.approx(want)
        assert rec.shift["nll_reasoning"] == pytest.approx(want + 0.5)
        assert rec.shift["nll_answer"] == pytest.approx(want - 0.5)
        assert "delta_nll_total" not in rec.shift  # no reference chosen
    assert not data.unscored
    assert data.shift_choices() == ["nll_total", "nll_reasoning", "nll_answer"]


def test_delta_nll_against_reference(planted):
    ws, _ = planted
    data = collect(ws, backend="fake", reference="selfgen")
    ref = np.mean(NLL["selfgen"])
    for rec in data.records:
        assert rec.shift["delta_nll_total"] == pytest.approx(rec.shift["nll_total"] - ref)
    assert set(data.shift_choices()) == set(SHIFT_STATS)


def test_unscored_runs_are_named(ws):
    runs = plant_workspace(ws, scores=False)
    data = collect(ws, backend="fake")
    assert {r for r, _ in data.unscored} == set(runs)
    assert "not scored" in data.unscored_message().lower() or "score it" in data.unscored_message()
    assert data.shift_choices() == []
    assert not results_table(data).empty  # the tables do not need scores


def test_other_backend_scores_are_not_used(planted):
    ws, runs = planted
    data = collect(ws, backend="hf")  # planted scores are the fake backend's: never mixed in
    assert {r for r, _ in data.unscored} == set(runs)


def test_scan_finds_scores_without_the_analysis_module(ws, monkeypatch):
    """Scores made with non-default settings, and no dgr_core.shift.analysis: the store scan still finds them."""
    save_dataset(ws, "star", 6)
    op = plant_scores(ws, "star", NLL["star"], max_length=512)
    train_run(ws, "r1", "star", ["star-0", "star-1"], 0)
    monkeypatch.setitem(sys.modules, "dgr_core.shift.analysis", None)  # import now raises ImportError
    (rec,) = collect(ws, backend="fake").records
    assert rec.shift["nll_total"] == pytest.approx(np.mean(NLL["star"][:2]))
    assert rec.shift_store == op


def test_partly_scored_training_data_is_unscored(ws):
    save_dataset(ws, "star", 6)
    save_dataset(ws, "part", 2)  # other texts: scoring it scores none of star's rows
    plant_scores(ws, "part", [1.0, 2.0])
    train_run(ws, "r1", "star", ["star-0", "star-1"], 0)
    data = collect(ws, backend="fake")
    assert [r for r, _ in data.unscored] == ["r1"] and not data.records[0].shift


# ---------------------------------------------------------------------------------------------------------------
# Scatter values and the fit
# ---------------------------------------------------------------------------------------------------------------


def test_scatter_frame_and_perfect_planted_fit(planted):
    ws, runs = planted
    data = collect(ws, backend="fake")
    frame = scatter_frame(data, "nll_total", "reasoning_avg")
    assert len(frame) == len(runs)
    assert frame.set_index("run_id")["y"].to_dict() == pytest.approx({k: 100 * v["acc"] for k, v in runs.items()})
    fit = fit_line(frame["x"], frame["y"])
    assert fit.slope == pytest.approx(100 * SLOPE) and fit.intercept == pytest.approx(100 * INTERCEPT)
    assert fit.pearson == pytest.approx(-1) and fit.spearman == pytest.approx(-1)
    assert fit.pearson_ci == pytest.approx((-1, -1)) and fit.spearman_ci == pytest.approx((-1, -1))
    drop = scatter_frame(data, "nll_total", "reasoning_drop_avg")
    base_avg = 100 * np.mean([BASE_METRICS["math500"][1], BASE_METRICS["gsm8k100"][1]])
    assert np.allclose(drop["y"], base_avg - frame["y"])
    assert fit_line(drop["x"], drop["y"]).pearson == pytest.approx(1)


def test_fit_positive_linear_and_interval_contains_estimate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 2 * x + rng.normal(scale=1.0, size=40)
    fit = fit_line(x, y, seed=3)
    assert fit.ok and 0 < fit.pearson < 1
    assert fit.pearson_ci[0] <= fit.pearson <= fit.pearson_ci[1] < 1
    assert fit.spearman_ci[0] <= fit.spearman <= fit.spearman_ci[1]
    assert fit_line(x, y, seed=3) == fit  # seeded: reproducible
    exact = fit_line([1, 2, 3, 4], [3, 5, 7, 9])
    assert exact.pearson == pytest.approx(1) and exact.pearson_ci == pytest.approx((1, 1))
    assert exact.slope == pytest.approx(2) and exact.intercept == pytest.approx(1)


def test_fit_independent_data_interval_covers_zero():
    rng = np.random.default_rng(0)
    fit = fit_line(rng.normal(size=60), rng.normal(size=60))
    assert fit.pearson_ci[0] < 0 < fit.pearson_ci[1]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fit_needs_three_points(n):
    fit = fit_line(list(range(n)), list(range(n)))
    assert not fit.ok and fit.n == n and math.isnan(fit.pearson) and "at least 3" in fit.summary()


def test_fit_ignores_nan_and_constant_x():
    assert fit_line([1, 2, float("nan"), 4], [1, 2, 3, float("nan")]).n == 2
    flat = fit_line([1, 1, 1, 1], [1, 2, 3, 4])
    assert not flat.ok and "same" in flat.note


def test_y_value_drop_uses_only_benchmarks_both_have(planted):
    ws, _ = planted
    rec = collect(ws, backend="fake").records[0]
    del rec.base["math500"]
    drop = y_value(rec, "reasoning_drop_avg", ["math500", "gsm8k100"])
    assert drop == pytest.approx(100 * (rec.base["gsm8k100"].value - rec.trained["gsm8k100"].value))
    rec.base.clear()
    assert math.isnan(y_value(rec, "reasoning_drop_avg", ["math500", "gsm8k100"]))


# ---------------------------------------------------------------------------------------------------------------
# Results table and budget curve
# ---------------------------------------------------------------------------------------------------------------


def test_results_table_shape_and_delta(planted):
    ws, runs = planted
    data = collect(ws, backend="fake")
    table = results_table(data)
    assert list(table["method"]) == ["base model", "SFT", "SFT on refined"]
    assert list(table.columns[-5:]) == TAIL_COLUMNS and TAIL_COLUMNS[:2] == ["reasoning avg", DELTA_COLUMN]
    assert {"refusal: strongreject", "over-refusal: xstest", "math500", "gsm8k100"} <= set(table.columns)
    base, sft, dgr = (table.iloc[i] for i in range(3))
    assert base["reasoning avg"] == pytest.approx(100 * 0.55) and math.isnan(base[DELTA_COLUMN])
    assert sft["N"] == dgr["N"] == 4 and sft["runs"] == dgr["runs"] == 2  # the largest N, both seeds
    want = {v: 100 * np.mean([r["acc"] for r in runs.values() if r["dataset"] == d and r["n"] == 4])
            for v, d in (("SFT", "star"), ("SFT on refined", "star-dgr"))}
    assert sft["reasoning avg"] == pytest.approx(want["SFT"])
    assert dgr["reasoning avg"] == pytest.approx(want["SFT on refined"])
    assert dgr[DELTA_COLUMN] == pytest.approx(dgr["reasoning avg"] - sft["reasoning avg"])
    assert dgr[DELTA_COLUMN] > 0  # planted: refined data is closer to the model, so it costs less
    assert math.isnan(sft[DELTA_COLUMN])
    small = results_table(data, n_samples=2)
    assert pd.isna(small["N"].iloc[0]) and small["N"].iloc[1:].tolist() == [2, 2]
    assert list(results_table(data, n_samples=99)["method"]) == ["base model"]


def test_budget_curve_aggregates_over_seeds(planted):
    ws, runs = planted
    curve = budget_curve(collect(ws, backend="fake"))
    assert len(curve) == 2 * 2 * 2  # variants x N x measures
    assert (curve["n_runs"] == 2).all() and all(list(s) == [0, 1] for s in curve["seeds"])
    for _, row in curve[curve["measure"] == "reasoning_avg"].iterrows():
        dataset = "star" if row["variant"] == "original" else "star-dgr"
        accs = [100 * r["acc"] for r in runs.values() if r["dataset"] == dataset and r["n"] == row["n_samples"]]
        assert row["mean"] == pytest.approx(np.mean(accs)) and row["std"] == pytest.approx(np.std(accs, ddof=1))
    refusal = curve[curve["measure"] == "refusal"]
    assert (refusal["std"] == 0).all()  # planted refusal is the same over seeds


def test_budget_curve_single_run_has_zero_error(ws):
    save_dataset(ws, "star", 6)
    train_run(ws, "r1", "star", ["star-0"], 0)
    eval_run(ws, "e1", "run:r1", {"math500": ("reasoning", 0.5)})
    curve = budget_curve(collect(ws, backend="fake"))
    assert curve["n_runs"].tolist() == [1] and curve["std"].tolist() == [0.0]


def test_a_broken_train_result_is_skipped_not_fatal(planted):
    ws, runs = planted
    write_run(ws, "20250106-000000-train-broken", "train", {"model": {"ref": BASE}, "dataset": "star"},
              {"base_model": {"ref": BASE}, "sample_ids": 5, "n_samples": "many"}, check=False)
    data = collect(ws, backend="fake")
    assert {r.run_id for r in data.records} == set(runs)
    assert [r for r, _ in data.skipped] == ["20250106-000000-train-broken"]


def test_format_table_prints_missing_as_dash(planted):
    ws, _ = planted
    shown = format_table(results_table(collect(ws, backend="fake")))
    assert shown.loc[0, "N"] == "–" and shown.loc[0, DELTA_COLUMN] == "–" and shown.loc[1, "N"] == "4"
    assert shown.loc[0, "reasoning avg"] == "55.0"


def test_results_of_the_real_evaluate_job_join(ws):
    """Contract check against the evaluate job itself (fake backend, in this process): its result.json joins."""
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, run_evaluation
    from dgr_core.jobs import manager
    from dgr_core.jobs.context import JobContext

    save_dataset(ws, "star", 3)
    train_run(ws, "20250102-000000-train-r1", "star", ["star-0"], 0)
    for ref in ("run:20250102-000000-train-r1", BASE):
        cfg = EvalConfig(model=ModelSpec(ref), backend="fake", limit=3, arithmetic_levels=[1],
                         benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")],
                         generation=GenerationConfig(max_new_tokens=64))
        run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name=f"eval {ref}")
        ctx = JobContext(run_dir, ws)
        ctx.write_result(run_evaluation(cfg, ws, run_dir))
        ctx.set_status("done")
    (rec,) = collect(ws, backend="fake").records
    assert set(rec.trained) == set(rec.base) == {"arithmetic", "strongreject"}
    assert rec.trained["arithmetic"].kind == "reasoning" and rec.trained["strongreject"].kind == "harmful"
    assert 0 <= rec.trained["strongreject"].value <= 1


def test_dataset_changed_or_deleted_since_training_is_noted(planted):
    ws, runs = planted
    save_dataset(ws, "star", 7)  # re-imported with another row: new fingerprint
    DatasetStore(ws).delete("star-dgr")
    notes = collect(ws, backend="fake").run_notes()
    star_runs = {r for r, v in runs.items() if v["dataset"] == "star"}
    assert {r for r, n in notes if "changed since training" in n} == star_runs
    assert {r for r, n in notes if "no longer in the workspace" in n} == set(runs) - star_runs
