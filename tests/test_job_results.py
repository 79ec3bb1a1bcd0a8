"""Every job kind is (Config, Result, run): both round-trip through dgr_core.config, result.json has a schema."""

from __future__ import annotations

import json

import pytest

from dgr_core.audit.config import AuditConfig
from dgr_core.config import ConfigError
from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig
from dgr_core.jobs.kinds import get_kind, known_kinds
from dgr_core.jobs.results import RESULT_SCHEMA, ScoreResult, parse_result, read_result, upgrade_result
from dgr_core.models.loading import ModelSpec
from dgr_core.pipeline import DemoConfig
from dgr_core.refine.job import RefineConfig
from dgr_core.scoring.api import ScoreConfig
from dgr_core.scoring.job import ScoreJobConfig
from dgr_core.shift.job import EmbedConfig, ProjectConfig
from dgr_core.train.config import SubsetConfig, TrainJobConfig

EXAMPLES = {
    "score": ScoreJobConfig("d", ScoreConfig(model=ModelSpec("run:x", dtype="float32"), backend="fake")),
    "refine": RefineConfig(dataset="d", limit=3),
    "train": TrainJobConfig("d", subset=SubsetConfig("category", category="c", hold_out_prompts=["p"])),
    "evaluate": EvalConfig(benchmarks=[BenchmarkSource("gsm8k100"), BenchmarkSource("f", path="x.jsonl", limit=2)]),
    "project": ProjectConfig(["a", "b"], method="pca"),
    "embed_sentences": EmbedConfig(["a"], column="prompt"),
    "demo": DemoConfig(seeds=[0, 1], eval_limits={"arithmetic": 3}),
    "audit": AuditConfig(dataset="d", judge="org/judge", limit=5),
}


def test_every_kind_is_typed_and_has_an_example():
    assert set(known_kinds()) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_config_and_result_round_trip_through_json(name):
    kind = get_kind(name)
    cfg = EXAMPLES[name]
    assert isinstance(cfg, kind.config)
    assert kind.config.from_dict(json.loads(json.dumps(cfg.to_dict())), "config") == cfg
    result = kind.result()
    assert kind.result.from_dict(json.loads(json.dumps(kind.make_result(result)))) == result


def test_evaluate_benchmarks_may_be_bare_names():
    assert EvalConfig.from_dict({"benchmarks": ["gsm8k100"]}).benchmarks == [BenchmarkSource("gsm8k100")]


def test_a_result_key_the_type_does_not_declare_fails_the_write():
    with pytest.raises(ConfigError, match="score result.surprise"):
        get_kind("score").make_result({"dataset": "d", "surprise": 1})


def test_old_result_folders_upgrade_and_future_ones_say_what_to_do(tmp_path):
    old = {"finished_at": "2026-01-01T00:00:00+00:00", "dataset": "d", "op_key": "k", "n": 2, "computed": 2,
           "cache_hits": 0, "mean": {"nll_total": 1.5, "nll_reasoning": None}, "tokens": 40}  # schema 0: no stamp
    assert upgrade_result(old) == {k: v for k, v in old.items() if k != "finished_at"}
    typed = parse_result("score", old)
    assert isinstance(typed, ScoreResult) and typed.mean["nll_total"] == 1.5
    (tmp_path / "job.json").write_text(json.dumps({"kind": "score", "config": {}}))
    assert read_result(tmp_path) is None
    (tmp_path / "result.json").write_text(json.dumps({**old, "result_schema": RESULT_SCHEMA}))
    assert read_result(tmp_path) == typed
    with pytest.raises(ConfigError, match="upgrade DGR Lens"):
        parse_result("score", {**old, "result_schema": RESULT_SCHEMA + 1})


# ---------------------------------------------------------------- read back through the types

def test_run_folders_of_the_first_version_read_back_typed(schema0_runs):
    """Real schema-0 folders (written by commit 34ded44's worker and evaluator) open as typed results."""
    from dgr_core.evaluate.signature import LEGACY, signature_of
    from dgr_core.jobs.manager import get_run
    from dgr_core.jobs.results import BenchmarkMetrics, EvalResult, TrainResult
    from dgr_core.workspace import Workspace

    ws = Workspace(schema0_runs["train"].parents[1])
    trained = get_run(ws, schema0_runs["train"].name).result_as(TrainResult)
    assert isinstance(trained, TrainResult)
    assert (trained.base_model.ref, trained.base_model.dtype, trained.method) == ("demo", "float32", "lora")
    assert (trained.seed, trained.subset.n, trained.subset.seed, trained.n_samples) == (1, 2, 1, 2)
    assert trained.subset.hold_out_prompts == [] and trained.subset.exclude_patterns == []  # fields added later
    evaluated = get_run(ws, schema0_runs["evaluate"].name).result_as(EvalResult)
    assert isinstance(evaluated, EvalResult) and evaluated.decoding is None and evaluated.model.ref == "demo"
    arithmetic = evaluated.metrics["arithmetic"]
    assert isinstance(arithmetic, BenchmarkMetrics) and arithmetic.signature is None and arithmetic.n_items is None
    assert arithmetic.items == arithmetic.n == 4 and arithmetic.kind == "reasoning"
    sig = signature_of(evaluated, "arithmetic")
    assert sig["items"] == f"{LEGACY}:4" and sig["judge"] == "answer-match-v1"
    # Read back and written out again, every stored value is what it was (defaults fill only what is absent).
    stored, again = json.loads((schema0_runs["evaluate"] / "result.json").read_text()), evaluated.to_dict()
    for key, value in stored.items():
        if key == "metrics":
            assert all({k: again[key][b][k] for k in m} == m for b, m in value.items())
        elif isinstance(value, dict) and key != "judge_semantics":  # generation: n=1 is added, a declared default
            assert {k: again[key][k] for k in value} == value, key
        elif key != "finished_at":
            assert again[key] == value, key


def test_a_result_that_does_not_fit_its_type_is_a_named_error(schema0_runs):
    from dgr_core.jobs.manager import RunInfo
    from dgr_core.jobs.results import EvalResult, ResultError, TrainResult

    train = RunInfo(schema0_runs["train"], {}, {})
    with pytest.raises(ResultError, match=r"is a 'train' run, not a 'evaluate' run"):
        train.result_as(EvalResult)
    path = schema0_runs["train"] / "result.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "surprise": 1}))
    with pytest.raises(ResultError, match=rf"{train.id}.*train result\.surprise"):
        train.result()
    path.write_text(json.dumps({**stored, "train": {**stored["train"], "epochs": "three"}}))
    with pytest.raises(ResultError, match=r"train result\.train\.epochs: expected int"):
        train.result_as(TrainResult)
    assert train.stored_result()["train"]["epochs"] == "three"  # shown as stored, for the Runs page
    path.write_text('{"method": "lo')
    with pytest.raises(ResultError, match="cannot be read"):
        train.result()


def test_a_run_model_reads_its_train_result_through_the_type(schema0_runs):
    from dgr_core.errors import ModelLoadError
    from dgr_core.models.loading import resolve_model_path
    from dgr_core.workspace import Workspace

    ws = Workspace(schema0_runs["train"].parents[1])
    with pytest.raises(ModelLoadError, match="adapter is missing|adapter.* is missing"):
        resolve_model_path(f"run:{schema0_runs['train'].name}", ws)  # the fixture keeps no weights
    with pytest.raises(ModelLoadError, match=r"'evaluate' run, not a 'train' run"):
        resolve_model_path(f"run:{schema0_runs['evaluate'].name}", ws)
    path = schema0_runs["train"] / "result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "method": 3}))
    with pytest.raises(ModelLoadError, match=r"train result\.method: expected str"):
        resolve_model_path(f"run:{schema0_runs['train'].name}", ws)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_kind_says_what_a_run_does_from_its_typed_config(name):
    kind = get_kind(name)
    line = kind.summary(EXAMPLES[name].to_dict())
    assert line and line != name
    assert kind.summary({"surprise": 1}) == name  # a config that does not fit its type: the kind's name


def test_run_info_reads_its_config_through_the_type(schema0_runs):
    from dgr_core.jobs.manager import get_run
    from dgr_core.train.config import TrainJobConfig
    from dgr_core.workspace import Workspace

    info = get_run(Workspace(schema0_runs["train"].parents[1]), schema0_runs["train"].name)
    cfg = info.config()
    assert isinstance(cfg, TrainJobConfig) and (cfg.dataset, cfg.subset.n, cfg.train.seed) == ("tiny", 2, 1)
    assert info.what == "lora SFT of demo on 2 random rows of tiny (seed 1)"
    assert info.config_as(TrainJobConfig) == cfg
    with pytest.raises(ConfigError, match=r"is a 'train' run \(config TrainJobConfig\), not EvalConfig"):
        info.config_as(EvalConfig)
