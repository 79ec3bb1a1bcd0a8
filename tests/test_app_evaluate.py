"""The Evaluate page in AppTest: opens empty, shows a finished fake-backend run (metrics, outputs, before/after),
and launches a run with the fake backend."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from dgr_core.backends.base import GenerationConfig
from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, run_evaluation
from dgr_core.jobs import manager
from dgr_core.jobs.context import JobContext
from dgr_core.workspace import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "evaluate.py")


def finished_eval_run(ws, name: str, max_new_tokens: int = 256) -> Path:
    """A done evaluate run on the fake backend, run in this process (no worker start-up)."""
    cfg = EvalConfig(backend="fake", benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")],
                     limit=4, arithmetic_levels=[1], generation=GenerationConfig(max_new_tokens=max_new_tokens))
    run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name=name)
    ctx = JobContext(run_dir, ws)
    ctx.write_result(run_evaluation(cfg, ws, run_dir))
    ctx.set_status("done")
    return run_dir


def _open(ws) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = "fake"
    return at.run()


def test_page_opens_without_runs(ws) -> None:
    at = _open(ws)
    assert not at.exception
    assert at.text_input(key="eval_model").value == "demo"
    assert any("No finished evaluation" in i.value for i in at.info)


def test_model_ref_handed_over_by_the_train_page(ws) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["eval_model_ref"] = "run:20250101-000000-train-abc"
    at.run()
    assert not at.exception
    assert at.text_input(key="eval_model").value == "run:20250101-000000-train-abc"


def test_finished_run_shows_metrics_outputs_and_before_after(ws) -> None:
    baseline = finished_eval_run(ws, "baseline", max_new_tokens=12)
    after = finished_eval_run(ws, "after")
    at = _open(ws)
    assert not at.exception
    at.selectbox(key="eval_result_run").select(after.name).run()
    metrics = at.dataframe[0].value
    assert metrics["benchmark"].tolist() == ["arithmetic", "strongreject"]
    assert metrics.set_index("benchmark").loc["arithmetic", "value"] == 1.0
    outputs = at.dataframe[1].value
    assert len(outputs) == 8 and {"prompt", "response", "verdict"} <= set(outputs.columns)
    at.selectbox(key="eval_out_bench").select("strongreject").run()
    assert set(at.dataframe[1].value["benchmark"]) == {"strongreject"}
    # Before / after against the baseline whose responses were cut at 12 tokens.
    assert at.selectbox(key="eval_baseline").value == baseline.name
    deltas = at.dataframe[2].value.set_index("benchmark")
    row = deltas.loc["strongreject"]
    assert row["delta"] == row["value_b"] - row["value_a"]
    at.selectbox(key="eval_paired_bench").select("strongreject").run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["delta (b - a)"] == f"{row['delta']:+.3f}" and shown["items"] == "4"
    assert "McNemar p" in shown


def test_a_result_that_does_not_read_back_is_named_and_the_others_still_show(ws) -> None:
    good = finished_eval_run(ws, "good")
    edited = finished_eval_run(ws, "edited")
    stored = json.loads((edited / "result.json").read_text())
    atomic_write_json(edited / "result.json", {**stored, "metrics": {"arithmetic": {"value": "high"}}})
    at = _open(ws)
    assert not at.exception
    assert any(edited.name in e.value and "metrics.arithmetic.value" in e.value for e in at.error)
    assert at.selectbox(key="eval_result_run").options == [good.name]  # only the run that reads back
    assert at.dataframe[0].value["benchmark"].tolist() == ["arithmetic", "strongreject"]


def test_launch_runs_a_fake_evaluation(ws) -> None:
    at = _open(ws)
    at.multiselect(key="eval_benchmarks").set_value(["arithmetic"])
    at.number_input(key="eval_limit").set_value(3)
    at.button(key="eval_launch").click().run()
    assert not at.exception and not at.error
    (run,) = manager.list_runs(ws, "evaluate")
    assert run.spec["config"]["backend"] == "fake" and run.spec["config"]["limit"] == 3
    assert manager.wait(run.run_dir, timeout=120)["state"] == "done", manager.log_tail(run.run_dir)
    at.run()
    assert at.dataframe[0].value["benchmark"].tolist() == ["arithmetic"]


def test_judges_tab_shows_the_keyword_judge_confusion_matrix(ws, shared_data) -> None:
    at = _open(ws)
    assert not at.exception
    matrix = at.dataframe[0].value
    assert list(matrix.columns) == ["judged refused", "judged complied"] and int(matrix.to_numpy().sum()) >= 150
    categories = at.dataframe[1].value
    assert "cant_however" in set(categories["category"]) and "refusal_multilingual" in set(categories["category"])


def test_grade_one_answer_shows_verdict_and_extractions(ws) -> None:
    at = _open(ws)
    at.text_input(key="grade_gold").set_value("\\frac{\\sqrt3}{3}")
    at.text_area(key="grade_output").set_value("<think>hmm</think> $\\boxed{\\frac{1}{\\sqrt3}}$").run()
    assert not at.exception
    shown = [m.value for m in at.markdown if m.value.startswith("**")]
    assert any(v.startswith("**correct**") and "1/sqrt(3)" in v for v in shown)


def test_reasoning_preset_launches_k_samples(ws) -> None:
    at = _open(ws)
    at.multiselect(key="eval_benchmarks").set_value(["arithmetic"])
    at.number_input(key="eval_limit").set_value(2)
    at.radio(key="eval_decoding").set_value("reasoning").run()
    at.number_input(key="eval_samples_reasoning").set_value(2)
    at.button(key="eval_launch").click().run()
    assert not at.exception and not at.error
    (run,) = manager.list_runs(ws, "evaluate")
    config = run.spec["config"]
    assert config["samples"] == 2 and config["generation"]["temperature"] == 0.6
    assert config["generation"]["top_p"] == 0.95 and config["judge_part"] == "both"
    assert manager.wait(run.run_dir, timeout=120)["state"] == "done", manager.log_tail(run.run_dir)
    at.run()
    metrics = at.dataframe[0].value.set_index("benchmark")
    assert metrics.loc["arithmetic", "n"] == 4 and metrics.loc["arithmetic", "samples"] == 2
    assert "reasoning k=2" in metrics.loc["arithmetic", "setting"]
