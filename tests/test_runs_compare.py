"""Run comparison (dgr_core.runs): config diff, metric deltas, paired outcomes on planted differences, loss
curves, the outputs table and the runs table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dgr_core import runs
from dgr_core.errors import DGRError
from dgr_core.evaluate.paired import mcnemar
from dgr_core.evaluate.runner import OUTPUTS_FILE, EvalConfig
from dgr_core.jobs import manager
from dgr_core.jobs.results import EvalResult
from dgr_core.workspace import atomic_write_json


def _write_run(folder: Path, correct: list[bool], *, benchmark: str = "arithmetic", kind: str = "reasoning",
               truncated: frozenset[int] = frozenset(), ids: list[str] | None = None) -> Path:
    """An outputs.jsonl with one record per item: correct / wrong (or refused / complied for safety kinds)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"item-{i:03d}" for i in range(len(correct))]
    with open(folder / OUTPUTS_FILE, "w") as fh:
        for i, (item, ok) in enumerate(zip(ids, correct, strict=True)):
            rec = {"benchmark": benchmark, "id": item, "kind": kind, "prompt": f"q{i}", "response": f"r{i}",
                   "finish_reason": "length" if i in truncated else "stop", "category": None}
            if kind == "reasoning":
                rec["outcome"] = "truncated" if i in truncated else ("correct" if ok else "wrong")
            else:
                rec["refused"] = ok
            fh.write(json.dumps(rec) + "\n")
    return folder


def test_paired_outcomes_detect_a_planted_improvement(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = rng.random(80) < 0.3
    b = a.copy()
    b[np.flatnonzero(~a)[:25]] = True  # b fixes 25 items a got wrong and breaks none
    table, test = runs.paired_outcomes(_write_run(tmp_path / "a", a.tolist()), _write_run(tmp_path / "b", b.tolist()),
                                       "arithmetic")
    assert len(table) == test.n == 80
    assert (test.b01, test.b10) == (25, 0) == (int((table["change"] == 1).sum()), int((table["change"] == -1).sum()))
    assert test.p_value == pytest.approx(mcnemar(a, b).p_value) and test.p_value < 1e-4
    assert test.delta == pytest.approx(25 / 80)
    assert 0 < test.ci_low <= test.delta <= test.ci_high


def test_identical_runs_show_no_difference(tmp_path) -> None:
    outcomes = [i % 3 == 0 for i in range(30)]
    _, test = runs.paired_outcomes(_write_run(tmp_path / "a", outcomes), _write_run(tmp_path / "b", outcomes),
                                   "arithmetic")
    assert (test.delta, test.p_value, test.ci_low, test.ci_high) == (0.0, 1.0, 0.0, 0.0)


def test_truncated_items_stay_in_the_paired_test_and_unshared_ones_are_named(tmp_path) -> None:
    """Every item counts: a truncated answer scores 0 in its run, it is never dropped from both."""
    run_a = _write_run(tmp_path / "a", [True] * 10, truncated=frozenset({0, 1, 2}))
    run_b = _write_run(tmp_path / "b", [False] * 12, ids=[f"item-{i:03d}" for i in range(12)],
                       truncated=frozenset({9}))
    table, test = runs.paired_outcomes(run_a, run_b, "arithmetic")
    assert test.n == len(table) == 10  # all 10 shared items
    assert table.attrs == {"n_common": 10, "n_dropped": 0, "n_truncated_a": 3, "n_truncated_b": 1, "n_only_a": 0,
                           "n_only_b": 2}
    assert test.mean_a == 0.7 and test.b10 == 7 and test.delta == pytest.approx(-0.7)


def test_k_samples_are_paired_on_per_item_means(tmp_path) -> None:
    """k samples per item: the item's score is its mean, and the test is the paired bootstrap."""
    for name, right in (("a", 1), ("b", 3)):
        folder = tmp_path / name
        folder.mkdir()
        with open(folder / OUTPUTS_FILE, "w") as fh:
            for i in range(20):
                for s in range(4):
                    fh.write(json.dumps({"benchmark": "math500", "id": f"m{i}", "sample": s, "kind": "reasoning",
                                         "outcome": "correct" if s < right else "wrong", "finish_reason": "stop",
                                         "prompt": "q", "response": "r", "category": None}) + "\n")
    table, test = runs.paired_outcomes(tmp_path / "a", tmp_path / "b", "math500")
    assert len(table) == test.n == 20 and set(table["score_a"]) == {0.25} and set(table["score_b"]) == {0.75}
    assert test.method == "paired-bootstrap" and test.delta == pytest.approx(0.5)


def test_metric_deltas_say_when_two_results_are_not_like_for_like() -> None:
    from dgr_core.evaluate.signature import eval_signature

    def result(n_items, temperature, samples):
        sig = eval_signature(benchmark="math500", kind="reasoning", item_ids=[str(i) for i in range(n_items)],
                             generation={"temperature": temperature, "top_p": 0.95, "max_new_tokens": 256},
                             samples=samples, judge="g")
        return EvalResult.from_dict({"metrics": {"math500": {"kind": "reasoning", "metric": "accuracy", "value": 0.5,
                                                             "n": n_items, "signature": sig}}})

    same = runs.metric_deltas(result(10, 0.0, 1), result(10, 0.0, 1)).iloc[0]
    other = runs.metric_deltas(result(10, 0.0, 1), result(100, 0.6, 4)).iloc[0]
    assert same["comparable"] and same["why_not"] == ""
    assert not other["comparable"] and "items: 10" in other["why_not"] and "decoding: greedy" in other["why_not"]


def test_safety_items_score_refusals(tmp_path) -> None:
    run_a = _write_run(tmp_path / "a", [False] * 20, benchmark="strongreject", kind="harmful")
    run_b = _write_run(tmp_path / "b", [i < 15 for i in range(20)], benchmark="strongreject", kind="harmful")
    table, test = runs.paired_outcomes(run_a, run_b, "strongreject")
    assert test.delta == pytest.approx(0.75) and test.b01 == 15
    assert set(table["verdict_a"]) == {"complied"} and "refused" in set(table["verdict_b"])


def test_paired_outcomes_errors(tmp_path) -> None:
    run_a = _write_run(tmp_path / "a", [True] * 5)
    with pytest.raises(DGRError, match="no outputs for benchmark 'gsm8k100'"):
        runs.paired_outcomes(run_a, run_a, "gsm8k100")
    run_b = _write_run(tmp_path / "b", [True] * 5, kind="harmful")
    with pytest.raises(DGRError, match="reasoning in run a but harmful"):
        runs.paired_outcomes(run_a, run_b, "arithmetic")
    run_c = _write_run(tmp_path / "c", [True] * 5, ids=[f"other-{i}" for i in range(5)])
    with pytest.raises(DGRError, match="share no item"):
        runs.paired_outcomes(run_a, run_c, "arithmetic")


def test_config_diff_finds_planted_differences() -> None:
    a = EvalConfig(limit=20).to_dict()
    b = EvalConfig(limit=50, arithmetic_levels=[1]).to_dict()
    b["generation"]["max_new_tokens"] = 64
    b["benchmarks"][1]["limit"] = 5
    b["extra"] = {"note": "x"}
    diff = runs.config_diff(a, b)
    assert diff["key"].tolist() == ["benchmarks.1.limit", "limit", "arithmetic_levels", "generation.max_new_tokens",
                                    "extra.note"]
    row = diff.set_index("key").loc["extra.note"]
    assert (row["a"], row["b"]) == (runs.ABSENT, "x")
    assert runs.config_diff(a, json.loads(json.dumps(a))).empty


def _result(**values: tuple[str, str, float | None]) -> dict:
    """An evaluate result.json as stored (a dict); `_typed` reads it back as the job's readers do."""
    return {"metrics": {name: {"kind": kind, "metric": metric, "value": v, "ci": None, "n": 10}
                        for name, (kind, metric, v) in values.items()}}


def _typed(**values: tuple[str, str, float | None]) -> EvalResult:
    return EvalResult.from_dict(_result(**values))


def test_metric_deltas() -> None:
    res_a = _typed(arithmetic=("reasoning", "accuracy", 0.5), strongreject=("harmful", "refusal_rate", 0.2),
                   xstest=("benign", "over_refusal_rate", 0.1))
    res_b = _typed(arithmetic=("reasoning", "accuracy", 0.4), strongreject=("harmful", "refusal_rate", 0.9),
                   xstest=("benign", "over_refusal_rate", 0.3), gsm8k100=("reasoning", "accuracy", 0.1))
    deltas = runs.metric_deltas(res_a, res_b).set_index("benchmark")
    assert deltas.loc["arithmetic", "delta"] == pytest.approx(-0.1)
    assert deltas.loc["strongreject", "delta"] == pytest.approx(0.7)
    # Better: more accuracy and more refusal of harmful prompts, but less over-refusal.
    assert deltas["better"].to_dict() == {"arithmetic": "a", "strongreject": "b", "xstest": "a", "gsm8k100": ""}
    assert deltas.loc["gsm8k100", "value_a"] is None or np.isnan(deltas.loc["gsm8k100", "value_a"])
    assert runs.common_benchmarks(res_a, res_b) == ["arithmetic", "strongreject", "xstest"]


def test_loss_curves(tmp_path) -> None:
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    run_a.mkdir()
    run_b.mkdir()
    (run_a / runs.LOSS_FILE).write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "epoch": 0}) + "\n"
                                                for s in range(1, 6)) + '{"step": 6, "lo')
    curves = runs.loss_curves({"a": run_a, "b": run_b})
    assert curves["run"].unique().tolist() == ["a"] and curves["step"].tolist() == [1, 2, 3, 4, 5]
    assert runs.load_loss(run_b).empty


def test_outputs_table_and_filter(tmp_path) -> None:
    folder = _write_run(tmp_path / "a", [True, False, True])
    _write_run(tmp_path / "s", [True, False], benchmark="strongreject", kind="harmful")
    with open(folder / OUTPUTS_FILE, "a") as fh:
        fh.write((tmp_path / "s" / OUTPUTS_FILE).read_text())
    df = runs.load_outputs(folder)
    assert df["verdict"].tolist() == ["correct", "wrong", "correct", "refused", "complied"]
    assert len(runs.filter_outputs(df, benchmark="strongreject")) == 2
    assert runs.filter_outputs(df, verdict="correct")["id"].tolist() == ["item-000", "item-002"]
    assert runs.filter_outputs(df, text="R1")["response"].tolist() == ["r1", "r1"]
    assert runs.load_outputs(tmp_path / "empty").empty


def test_run_table_lists_runs_with_headlines(ws) -> None:
    cfg = EvalConfig(backend="fake", limit=2).to_dict()
    done = manager.create_run(ws, "evaluate", cfg, name="finished")
    atomic_write_json(done / "result.json", _result(arithmetic=("reasoning", "accuracy", 0.75)))
    atomic_write_json(done / "status.json", {"state": "done"})
    manager.create_run(ws, "evaluate", cfg, name="queued")
    table = runs.run_table(ws)
    assert len(table) == 2 and set(table["kind"]) == {"evaluate"} and set(table["model"]) == {"demo"}
    row = table.set_index("name").loc["finished"]
    assert row["headline"] == "arithmetic accuracy 0.75"
    assert table.set_index("name").loc["queued", "headline"] == ""
    newer = manager.create_run(ws, "evaluate", cfg, name="newer")
    result = _result(arithmetic=("reasoning", "accuracy", 0.5))
    result["metrics"]["arithmetic"].update(n=20, truncation_rate=0.15)
    atomic_write_json(newer / "result.json", result)
    atomic_write_json(newer / "status.json", {"state": "done"})
    assert runs.run_table(ws).set_index("name").loc["newer", "headline"] == "arithmetic accuracy 0.50 (n=20, 15% cut)"
    assert runs.run_table(ws, kind="train").empty


def test_run_table_names_a_result_that_does_not_read_back_and_lists_the_rest(ws) -> None:
    """A hand-edited result.json (a key its type does not declare) shows its error, naming the run and the field,
    in the error column; the other runs are listed as before and nothing raises."""
    cfg = EvalConfig(backend="fake", limit=2).to_dict()
    edited = manager.create_run(ws, "evaluate", cfg, name="edited")
    atomic_write_json(edited / "result.json", {**_result(arithmetic=("reasoning", "accuracy", 0.5)), "surprise": 1})
    atomic_write_json(edited / "status.json", {"state": "done"})
    good = manager.create_run(ws, "evaluate", cfg, name="good")
    atomic_write_json(good / "result.json", _result(arithmetic=("reasoning", "accuracy", 0.75)))
    atomic_write_json(good / "status.json", {"state": "done"})
    table = runs.run_table(ws).set_index("name")
    assert table.loc["edited", "headline"] == ""
    assert edited.name in table.loc["edited", "error"] and "evaluate result.surprise" in table.loc["edited", "error"]
    assert (table.loc["good", "headline"], table.loc["good", "error"]) == ("arithmetic accuracy 0.75", "")


def test_headline_of_other_kinds_is_their_first_numeric_fields() -> None:
    from dgr_core.jobs.results import ScoreResult, TrainResult

    score = ScoreResult(dataset="star1", n=20, computed=5, cache_hits=15, mean={"nll_total": 1.2}, tokens=900)
    assert runs.headline("score", score) == "n 20; computed 5; cache_hits 15; tokens 900"
    train = TrainResult(n_samples=10, steps=5, first_loss=None, final_loss=0.5, seconds=3.0)
    assert runs.headline("train", train) == "n_samples 10; n_truncated 0; steps 5; final_loss 0.5"
    assert runs.headline("train", None) == ""


LEGACY_METRIC = {"kind": "reasoning", "metric": "accuracy", "value": 0.5, "ci": [0.2, 0.8], "n": 10, "n_total": 12,
                 "n_truncated": 2, "n_no_answer": 0, "n_length": 2}


def _legacy_run(ws) -> manager.RunInfo:
    """An evaluate run folder as written before result_schema, signatures, decoding and n_items existed."""
    cfg = EvalConfig(backend="fake", limit=10).to_dict()
    run_dir = manager.create_run(ws, "evaluate", cfg, name="legacy")
    atomic_write_json(run_dir / "result.json", {
        "finished_at": "2025-01-01T00:00:00+00:00", "model": {"ref": "demo"}, "model_label": "demo",
        "backend": "fake", "metrics": {"arithmetic": LEGACY_METRIC}, "judge": "math-verify",
        "generation": {"max_new_tokens": 64, "temperature": 0.0}, "n_samples": 12, "seconds": 1.0})
    atomic_write_json(run_dir / "status.json", {"state": "done"})
    return manager.get_run(ws, run_dir.name)


def _current_run(ws) -> manager.RunInfo:
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.evaluate.runner import BenchmarkSource, run_evaluation
    from dgr_core.jobs.context import JobContext

    cfg = EvalConfig(backend="fake", benchmarks=[BenchmarkSource("arithmetic")], limit=10, arithmetic_levels=[1],
                     generation=GenerationConfig(max_new_tokens=64))
    run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name="current")
    ctx = JobContext(run_dir, ws)
    ctx.write_result(run_evaluation(cfg, ws, run_dir))
    ctx.set_status("done")
    return manager.get_run(ws, run_dir.name)


def test_a_schema_0_result_reads_back_but_is_never_like_for_like_with_a_current_one(ws) -> None:
    legacy, current = _legacy_run(ws).result_as(EvalResult), _current_run(ws).result_as(EvalResult)
    assert legacy is not None and current is not None and legacy.decoding is None
    row = runs.metrics_table(legacy).iloc[0]
    assert (row["benchmark"], row["value"], row["ci_low"], row["ci_high"]) == ("arithmetic", 0.5, 0.2, 0.8)
    assert (row["n"], row["n_items"], row["samples"], row["n_truncated"]) == (10, 12, 1, 2)  # n left out the cut
    assert row["setting"].startswith("12 items · greedy · 64 tok")
    for a, b in ((legacy, current), (current, legacy)):
        delta = runs.metric_deltas(a, b).set_index("benchmark").loc["arithmetic"]
        assert not delta["comparable"] and "items: " in delta["why_not"] and "legacy:12" in delta["why_not"]
    assert runs.common_benchmarks(legacy, current) == ["arithmetic"]
    same = runs.metric_deltas(legacy, legacy).iloc[0]
    assert same["comparable"] and same["delta"] == 0.0 and same["ci_a"] == [0.2, 0.8]
    assert runs.run_table(ws).set_index("name").loc["legacy", "headline"] == "arithmetic accuracy 0.50"


def test_dgr_jobs_end_report_prints_the_typed_result_and_names_one_that_does_not_read_back(ws, capsys) -> None:
    from dgr_core.cli import main

    info = _current_run(ws)
    typed = info.result_as(EvalResult)
    assert typed is not None
    capsys.readouterr()
    assert main(["jobs", "follow", info.id]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{"):])
    assert printed == typed.to_dict() and "finished_at" not in printed  # the Result's fields, not the envelope
    assert printed["metrics"]["arithmetic"]["value"] == typed.metrics["arithmetic"].value
    stored = info.stored_result()
    atomic_write_json(info.run_dir / "result.json", {**(stored or {}), "surprise": 1})
    assert main(["jobs", "follow", info.id]) == 1
    captured = capsys.readouterr()
    assert "evaluate result.surprise" in captured.err and info.id in captured.err and "{" not in captured.out
    assert main(["jobs", "list"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(info.id) and info.what in line and info.what.startswith("evaluate ")


def test_run_folders_of_the_first_version_list_and_compare(schema0_runs, ws) -> None:
    """The real schema-0 folders (tests/data/schema0): listed with their headlines, and an old evaluation is never
    like for like with one run now with the same config (its item set is unknown: "legacy")."""
    from dgr_core.evaluate.runner import run_evaluation
    from dgr_core.jobs.context import JobContext

    table = runs.run_table(ws).set_index("kind")
    assert (table["error"] == "").all()
    assert table.loc["evaluate", "headline"] == "arithmetic accuracy 1.00; strongreject refusal_rate 0.00"
    assert table.loc["train", "headline"].startswith("n_samples 2;")
    assert table.loc["train", "what"] == "lora SFT of demo on 2 random rows of tiny (seed 1)"
    assert table.loc["evaluate", "what"] == ("evaluate SmolLM2-135M-Instruct (demo) [fake] on arithmetic, strongreject "
                                             "(greedy, 256 tokens)")
    old = manager.get_run(ws, schema0_runs["evaluate"].name)
    cfg = old.config()
    assert isinstance(cfg, EvalConfig)
    run_dir = manager.create_run(ws, "evaluate", cfg.to_dict(), name="now")
    ctx = JobContext(run_dir, ws)
    ctx.write_result(run_evaluation(cfg, ws, run_dir))
    ctx.set_status("done")
    deltas = runs.metric_deltas(old.result_as(EvalResult), manager.get_run(ws, run_dir.name).result_as(EvalResult))
    assert deltas["benchmark"].tolist() == ["arithmetic", "strongreject"]
    assert not deltas["comparable"].any() and deltas["why_not"].str.contains("legacy:").all()
