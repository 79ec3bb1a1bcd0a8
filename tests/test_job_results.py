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
