"""The Runs page in AppTest: opens empty; lists runs with a kind filter; shows a run's details and outputs; and
compares two evaluate runs (config diff, metric deltas, paired test) and two train runs (loss curves)."""

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
PAGE = str(REPO / "views" / "runs.py")


def finished_eval_run(ws, name: str, limit: int) -> Path:
    """A done evaluate run on the fake backend, run in this process."""
    cfg = EvalConfig(backend="fake", benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")],
                     limit=limit, arithmetic_levels=[1], generation=GenerationConfig(max_new_tokens=64))
    run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name=name)
    ctx = JobContext(run_dir, ws)
    ctx.write_result(run_evaluation(cfg, ws, run_dir))
    ctx.set_status("done")
    return run_dir


def train_run(ws, name: str, lr: float) -> Path:
    """A finished train run folder as the train job writes it (job.json, status, loss.jsonl, result)."""
    run_dir = ws.runs / f"20250101-000000-{name}-0000"
    run_dir.mkdir(parents=True)
    atomic_write_json(run_dir / "job.json", {"kind": "train", "name": name, "created_at": "2025-01-01T00:00:00",
                                             "config": {"model": {"ref": "demo"}, "lr": lr}})
    atomic_write_json(run_dir / "status.json", {"state": "done"})
    (run_dir / "loss.jsonl").write_text("".join(json.dumps({"step": s, "loss": lr * 1e4 / s, "epoch": 0}) + "\n"
                                                for s in range(1, 5)))
    atomic_write_json(run_dir / "result.json", {"final_loss": 0.5})
    return run_dir


def test_page_opens_without_runs(ws) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)


def test_lists_filters_details_and_compares_evaluate_runs(ws) -> None:
    small = finished_eval_run(ws, "small", limit=3)
    large = finished_eval_run(ws, "large", limit=5)
    train_run(ws, "train-a", 1e-4)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 3
    at.selectbox(key="runs_kind").select("evaluate").run()
    table = at.dataframe[0].value
    assert set(table["kind"]) == {"evaluate"} and len(table) == 2
    assert table["headline"].str.contains("arithmetic accuracy 1.00").all()
    # Details of the small run: its metrics and its outputs.
    at.selectbox(key="runs_detail").select(small.name).run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    assert any(len(f) == 6 and "verdict" in f.columns for f in frames)  # 3 arithmetic + 3 strongreject outputs
    # Compare: a = small, b = large.
    at.selectbox(key="runs_cmp_a").select(small.name).run()
    at.selectbox(key="runs_cmp_b").select(large.name).run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    diff = next(f for f in frames if list(f.columns) == ["key", "a", "b"])
    assert diff.set_index("key").loc["limit"].tolist() == ["3", "5"]
    deltas = next(f for f in frames if "delta" in f.columns and "better" in f.columns).set_index("benchmark")
    assert deltas.loc["arithmetic", "delta"] == 0.0
    assert any("McNemar p" in m.value for m in at.markdown)


def test_compares_train_runs_with_loss_curves(ws) -> None:
    a, b = train_run(ws, "train-a", 1e-4), train_run(ws, "train-b", 2e-4)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="runs_cmp_a").select(a.name).run()
    at.selectbox(key="runs_cmp_b").select(b.name).run()
    assert not at.exception
    diff = next(d.value for d in at.dataframe if list(d.value.columns) == ["key", "a", "b"])
    assert diff["key"].tolist() == ["lr"]
    assert len(at.get("plotly_chart")) >= 1


def test_a_result_that_does_not_read_back_shows_its_error_and_the_stored_json(ws) -> None:
    """A hand-edited result.json (a key its type does not declare): the table names the error, the details show
    it with the JSON as stored, and comparing it with a good run says why; the page keeps running."""
    good = finished_eval_run(ws, "good", limit=2)
    edited = finished_eval_run(ws, "edited", limit=2)
    stored = json.loads((edited / "result.json").read_text())
    atomic_write_json(edited / "result.json", {**stored, "surprise": 1})
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert "evaluate result.surprise" in table.loc[edited.name, "error"] and table.loc[edited.name, "headline"] == ""
    assert table.loc[good.name, "error"] == ""
    at.selectbox(key="runs_detail").select(edited.name).run()
    at.selectbox(key="runs_cmp_a").select(good.name).run()
    at.selectbox(key="runs_cmp_b").select(edited.name).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("Result:" in e and "evaluate result.surprise" in e for e in errors)  # the details tab
    assert any(f"Run {edited.name}" in e for e in errors)  # the comparison
    assert any(json.loads(j.value) == {**stored, "surprise": 1} for j in at.json)  # result.json as stored
    assert not any("delta" in d.value.columns and "better" in d.value.columns for d in at.dataframe)


def test_run_folders_of_the_first_version_open(schema0_runs, ws) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    for kind in ("evaluate", "train"):
        at.selectbox(key="runs_detail").select(schema0_runs[kind].name).run()
        assert not at.exception and not at.error
        results = [d.value for d in at.dataframe if list(d.value.columns) == ["setting", "value"]]
        assert any("model_label" in set(r["setting"]) or "final_loss" in set(r["setting"]) for r in results)
