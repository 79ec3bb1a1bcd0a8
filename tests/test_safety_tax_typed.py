"""The safety-tax view reads run results through their typed Result (dgr_core.jobs.results), never by guessing:
an unreadable train or evaluate result is listed in `skipped` with the field named (and the page and report say
so instead of failing), an evaluation written in the old schema-0 shape joins as a "legacy" setting that is never
mixed with a current one, the seed is `TrainResult.train.seed` and the model of an evaluation is
`EvalResult.model.ref`."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_safety_tax import BASE, eval_run, save_dataset, train_run, write_run
from test_safety_tax_joins import SAMPLED, _eval, _sig

from dgr_core.jobs.results import TrainResult
from dgr_core.models.loading import ModelSpec
from dgr_core.report import build_report
from dgr_core.safety_tax import collect, results_table
from dgr_core.workspace import atomic_write_json, read_json

REPO = Path(__file__).resolve().parents[1]
TRAINED = "20250102-000000-train-r1"
# One benchmark's metrics exactly as `evaluate` wrote them before result_schema, signatures, decoding and n_items.
LEGACY_METRICS = {"kind": "reasoning", "metric": "accuracy", "value": 0.5, "ci": [0.2, 0.8], "n": 10, "n_total": 12,
                  "n_truncated": 2, "n_no_answer": 0, "n_length": 2}


def _legacy_eval(ws, run_id: str, ref: str, value: float, created_at: str = "2025-01-03T00:00:00+00:00") -> Path:
    """An evaluate run folder of schema 0: no result_schema, no decoding, metrics without signature / n_items."""
    model = ModelSpec(ref).to_dict()
    result = {"model": model, "model_label": ref, "metrics": {"math500": {**LEGACY_METRICS, "value": value}},
              "judge": "math-verify", "generation": {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0,
                                                     "seed": 0, "batch_size": 8}, "seconds": 3.0}
    run = write_run(ws, run_id, "evaluate", {"model": model, "backend": "fake"}, result, created_at=created_at)
    assert "result_schema" not in read_json(run / "result.json")
    return run


def _corrupt(run: Path, **changes) -> None:
    """Hand-edit a planted result.json (what a half-copied or foreign file looks like)."""
    atomic_write_json(run / "result.json", {**read_json(run / "result.json"), **changes})


@pytest.fixture
def one_run(ws):
    save_dataset(ws, "star", 4)
    train_run(ws, TRAINED, "star", ["star-0", "star-1"], 0)
    eval_run(ws, "20250103-000000-eval-trained", f"run:{TRAINED}", {"math500": ("reasoning", 0.4)})
    eval_run(ws, "20250103-000001-eval-base", BASE, {"math500": ("reasoning", 0.6)})
    return ws


# ---------------------------------------------------------------------------------------------------------------
# Unreadable results: skipped with the field named, never fatal
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [({"surprise": 1}, "surprise"), ({"n_samples": "many"}, "n_samples"),
                                               ({"train": {"seed": "zero"}}, "train.seed")])
def test_a_train_result_with_an_unknown_key_or_wrong_type_is_skipped_naming_the_field(one_run, change, field):
    ws = one_run
    bad = train_run(ws, "20250102-000001-train-bad", "star", ["star-2"], 1)
    _corrupt(bad, **change)
    data = collect(ws, backend="fake")
    assert [r.run_id for r in data.records] == [TRAINED]  # the readable run still joins
    ((run_id, why),) = data.skipped
    assert run_id == bad.name and field in why and bad.name in why
    assert bad.name in data.skipped_message()


def test_an_unreadable_evaluate_result_is_skipped_not_dropped(one_run):
    ws = one_run
    bad = eval_run(ws, "20250104-000000-eval-trained-bad", f"run:{TRAINED}", {"math500": ("reasoning", 0.9)},
                   created_at="2025-01-04T00:00:00+00:00")
    _corrupt(bad, metrics={"math500": {"kind": "reasoning", "value": "high"}})
    data = collect(ws, backend="fake")
    (rec,) = data.records
    assert rec.trained["math500"].value == pytest.approx(0.4)  # the older readable evaluation, not the broken one
    ((run_id, why),) = data.skipped
    assert run_id == bad.name and "math500.value" in why


def test_only_unreadable_train_runs_still_name_them_on_the_page_and_in_the_report(ws):
    save_dataset(ws, "star", 4)
    bad = train_run(ws, TRAINED, "star", ["star-0"], 0)
    _corrupt(bad, sample_ids="star-0")
    data = collect(ws, backend="fake")
    assert data.empty and [r for r, _ in data.skipped] == [TRAINED]
    doc = build_report(ws, data=data)
    assert "Skipped 1 run(s)" in doc and TRAINED in doc and "sample_ids" in doc
    for page in ("safety_tax.py", "report.py"):
        at = AppTest.from_file(str(REPO / "views" / page), default_timeout=60)
        at.session_state["backend"] = "fake"
        at.run()
        assert not at.exception and not at.error, page
        assert any(TRAINED in w.value and "sample_ids" in w.value for w in at.warning), page


def test_the_cli_names_skipped_runs_even_when_none_is_left(ws, capsys):
    from dgr_core.cli import main

    save_dataset(ws, "star", 4)
    _corrupt(train_run(ws, TRAINED, "star", ["star-0"], 0), n_samples="many")
    assert main(["safety-tax", "--backend", "fake"]) == 2
    err = capsys.readouterr().err
    assert f"skipped {TRAINED}" in err and "n_samples" in err and "No finished training runs" in err


def test_the_page_and_report_show_skipped_runs_beside_the_readable_ones(one_run):
    ws = one_run
    bad = train_run(ws, "20250102-000001-train-bad", "star", ["star-2"], 1)
    _corrupt(bad, surprise=True)
    at = AppTest.from_file(str(REPO / "views" / "safety_tax.py"), default_timeout=60)
    at.session_state["backend"] = "fake"
    at.run()
    assert not at.exception and not at.error
    assert any(bad.name in w.value and "surprise" in w.value for w in at.warning)
    assert at.dataframe  # the readable run's table is still there
    doc = build_report(ws)
    assert "Skipped 1 run(s)" in doc and "surprise" in doc and TRAINED in doc


# ---------------------------------------------------------------------------------------------------------------
# Old (schema 0) evaluations: joined as "legacy", never mixed with current ones
# ---------------------------------------------------------------------------------------------------------------


def test_a_schema_0_evaluation_joins_as_a_legacy_setting(ws):
    save_dataset(ws, "star", 4)
    train_run(ws, TRAINED, "star", ["star-0", "star-1"], 0)
    _legacy_eval(ws, "20250103-000000-eval-trained", f"run:{TRAINED}", 0.5)
    _legacy_eval(ws, "20250103-000001-eval-base", BASE, 0.7)
    data = collect(ws, backend="fake")
    assert not data.skipped and not data.excluded
    assert data.settings["math500"]["items"] == "legacy:12" and data.settings["math500"]["n_items"] == 12
    (rec,) = data.records
    got = rec.trained["math500"]
    assert (got.value, got.ci, got.n, got.kind, got.metric) == (0.5, (0.2, 0.8), 10, "reasoning", "accuracy")
    assert rec.base["math500"].value == pytest.approx(0.7)
    assert results_table(data)["math500"].tolist() == pytest.approx([70.0, 50.0])


def test_a_legacy_evaluation_is_never_mixed_with_a_current_one(ws):
    """The trained model has only an old evaluation, the base model only a current 100-item one: the table shows
    one of them, and the other is excluded with the reason (legacy items vs the current item set)."""
    save_dataset(ws, "star", 4)
    train_run(ws, TRAINED, "star", ["star-0", "star-1"], 0)
    _legacy_eval(ws, "20250103-000000-eval-trained", f"run:{TRAINED}", 0.5)
    _eval(ws, "20250103-000001-eval-base", BASE, 0.60, _sig(100, SAMPLED, 4), "2025-01-03T00:00:01+00:00")
    data = collect(ws, backend="fake")
    assert data.settings["math500"]["items"] == "legacy:12"  # it covers the training run
    (rec,) = data.records
    assert rec.trained["math500"].value == 0.5 and rec.base == {}
    (left_out,) = data.excluded
    assert left_out["run"] == "20250103-000001-eval-base" and left_out["model"] == BASE
    assert "items: 100" in left_out["why"] and "vs 12 (legacy:12)" in left_out["why"]
    assert results_table(data)["math500"].isna().tolist() == [True, False]


def test_a_newer_current_evaluation_does_not_replace_the_legacy_one_it_differs_from(ws):
    save_dataset(ws, "star", 4)
    train_run(ws, TRAINED, "star", ["star-0", "star-1"], 0)
    _legacy_eval(ws, "20250103-000000-eval-trained", f"run:{TRAINED}", 0.5)
    _legacy_eval(ws, "20250103-000001-eval-base", BASE, 0.7)
    _eval(ws, "20250105-000000-eval-base-new", BASE, 0.60, _sig(100, SAMPLED, 4), "2025-01-05T00:00:00+00:00")
    (rec,) = collect(ws, backend="fake").records
    assert rec.base["math500"].run_id == "20250103-000001-eval-base"  # the like-for-like one, though older


# ---------------------------------------------------------------------------------------------------------------
# Fields come from the typed result, not from wherever a key happens to be
# ---------------------------------------------------------------------------------------------------------------


def test_the_seed_of_a_record_is_train_seed_of_the_result(ws):
    save_dataset(ws, "star", 4)
    run = train_run(ws, TRAINED, "star", ["star-0"], 7)
    result = read_json(run / "result.json")
    _corrupt(run, subset={**result["subset"], "seed": 3})  # the subset's seed draws rows; it is not the run's seed
    spec = read_json(run / "job.json")
    atomic_write_json(run / "job.json", {**spec, "config": {**spec["config"], "train": {"seed": 99}}})
    (rec,) = collect(ws, backend="fake").records
    assert rec.seed == 7 == TrainResult.from_dict(read_json(run / "result.json")).seed


def test_an_evaluation_joins_on_the_model_its_result_names(ws):
    save_dataset(ws, "star", 4)
    train_run(ws, TRAINED, "star", ["star-0"], 0)
    run = eval_run(ws, "20250103-000000-eval", f"run:{TRAINED}", {"math500": ("reasoning", 0.4)})
    spec = read_json(run / "job.json")  # a spec that says otherwise is not what was evaluated
    atomic_write_json(run / "job.json", {**spec, "config": {**spec["config"], "model": {"ref": "elsewhere"}}})
    (rec,) = collect(ws, backend="fake").records
    assert rec.trained["math500"].value == pytest.approx(0.4) and rec.trained["math500"].metric == "accuracy"


# ---------------------------------------------------------------------------------------------------------------
# Real run folders written by the first version (tests/data/schema0)
# ---------------------------------------------------------------------------------------------------------------


def test_real_schema_0_run_folders_join_as_legacy(ws, schema0_runs):
    data = collect(ws, backend="fake")
    assert not data.skipped
    (rec,) = data.records
    assert rec.run_id == schema0_runs["train"].name and rec.base_model == "demo" and rec.method == "lora"
    assert (rec.seed, rec.n_samples, rec.sample_ids) == (1, 2, ["a", "c"])
    assert any("no longer in the workspace" in note for note in rec.notes)  # its dataset "tiny" is not here
    assert {b: r.value for b, r in rec.base.items()} == {"arithmetic": 1.0, "strongreject": 0.0}
    assert rec.base["arithmetic"].run_id == schema0_runs["evaluate"].name and rec.base["arithmetic"].n == 4
    assert data.settings["arithmetic"]["items"] == "legacy:4" and data.settings["strongreject"]["items"] == "legacy:3"


def test_a_current_evaluation_is_never_mixed_with_a_real_schema_0_one(ws, schema0_runs):
    """The old train run's model evaluated now (eval signatures) and its base model evaluated by the first version:
    the current setting covers the training run, so the old base evaluation is left out and named, not mixed."""
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, run_evaluation
    from dgr_core.jobs import manager
    from dgr_core.jobs.context import JobContext

    ref = f"run:{schema0_runs['train'].name}"
    cfg = EvalConfig(model=ModelSpec(ref), backend="fake", limit=4, arithmetic_levels=[1],
                     benchmarks=[BenchmarkSource("arithmetic")], generation=GenerationConfig(max_new_tokens=64))
    run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name="eval now")
    JobContext(run_dir, ws).write_result(run_evaluation(cfg, ws, run_dir))
    JobContext(run_dir, ws).set_status("done")
    data = collect(ws, backend="fake")
    assert not data.skipped
    (rec,) = data.records
    assert not data.settings["arithmetic"]["items"].startswith("legacy")
    assert rec.trained["arithmetic"].run_id == run_dir.name and "arithmetic" not in rec.base
    (left_out,) = [e for e in data.excluded if e["benchmark"] == "arithmetic"]
    assert left_out["run"] == schema0_runs["evaluate"].name and "legacy:4" in left_out["why"]
    assert results_table(data)["arithmetic"].isna().tolist() == [True, False]
