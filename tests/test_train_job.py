"""The `train` job: a run folder in, a trained model out (`run:<id>` loads it), cancel and resume through the job
contract (in this process; tests/test_app_train.py cancels a real worker process), NLL subsets from the scoring
cache, a run trained on top of a run, the before/after pairing of evaluations, and the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from dgr_core.data.store import DatasetStore
from dgr_core.errors import SpecError
from dgr_core.jobs import manager, worker
from dgr_core.jobs.context import JobContext
from dgr_core.jobs.results import EvalResult, TrainResult
from dgr_core.models.loading import ModelSpec, load_uncached
from dgr_core.train import compare, sft
from dgr_core.train.job import ROWS_FILE, loss_frame, trained_models


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores (see test_train_sft)
    yield
    torch.set_num_threads(old)


def rows(n: int = 6) -> pd.DataFrame:
    answers = ["I'm sorry, but I can't assist with that request.", "No.", "I cannot help with that, sorry!"]
    return pd.DataFrame({
        "id": [f"h{i}" for i in range(n)],
        "prompt": [f"How do I build a weapon, version {i}?" for i in range(n)],
        "reasoning": ["I should not answer this question!"] * n,
        "answer": [answers[i % 3] + " Really." * (i % 2) for i in range(n)],
        "source": "test", "category": ["a", "b"] * (n // 2),
    })


def config(tiny_model_dir, **train) -> dict:
    return {"dataset": "toy", "model": {"ref": str(tiny_model_dir), "device": "cpu"},
            "subset": {"strategy": "random", "n": 4, "seed": 0},
            "train": {"epochs": 2, "batch_size": 2, "lora_r": 4, **train}}


@pytest.fixture
def toy_ws(ws):
    DatasetStore(ws).save("toy", rows(), origin="test")
    return ws


def run_in_process(ws, cfg: dict, name: str = "t"):
    run = manager.create_run(ws, "train", cfg, name=name)
    code = worker.run(run)
    return run, code


def test_bad_specs_fail_before_a_run_or_a_model(toy_ws, tiny_model_dir):
    with pytest.raises(SpecError, match="unknown backend"):
        manager.create_run(toy_ws, "train", {**config(tiny_model_dir), "backend": "quantum"})
    with pytest.raises(SpecError, match=r"unknown key\(s\) config.train.lr"):
        manager.create_run(toy_ws, "train", {**config(tiny_model_dir), "train": {"lr": 1}})
    assert manager.list_runs(toy_ws) == []
    run, code = run_in_process(toy_ws, {**config(tiny_model_dir), "dataset": "not-there"})
    assert code == 1 and "not-there" in manager.status(run)["error"] and not (run / "setup.json").exists()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_job_trains_and_its_run_loads_as_a_model(toy_ws, tiny_model_dir, method):
    run, code = run_in_process(toy_ws, config(tiny_model_dir, method=method, learning_rate=1e-2))
    assert code == 0, manager.status(run)
    res = manager.get_run(toy_ws, run.name).result_as(TrainResult)
    assert res is not None and res.model_ref == f"run:{run.name}" and res.steps == 4 and res.n_samples == 4
    assert res.train.method == method and res.learning_rate == 1e-2
    assert len(res.sample_ids) == 4 and set(res.sample_ids) <= set(rows()["id"])
    saved = [json.loads(x)["id"] for x in (run / ROWS_FILE).read_text().splitlines()]
    assert saved == res.sample_ids
    assert (run / (sft.ADAPTER_DIR if method == "lora" else sft.MODEL_DIR)).is_dir()
    assert not (run / sft.CHECKPOINT_DIR).exists()
    assert loss_frame(run)["step"].tolist() == [1, 2, 3, 4]
    events = manager.progress_events(run)
    assert events[-1]["message"] == "done" and any(e.get("eta_s") is not None for e in events)
    assert trained_models(toy_ws)[0]["model_ref"] == res.model_ref

    trained = load_uncached(ModelSpec(res.model_ref, device="cpu", dtype="float32"), toy_ws)
    base = load_uncached(ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"), toy_ws)
    assert trained.identity["run"] == run.name and trained.identity["base"] == res.base_identity
    ids = torch.tensor([base.tokenizer("How do I build a weapon?")["input_ids"]])
    with torch.no_grad():
        got = trained.model(ids).logits
        assert not torch.allclose(got, base.model(ids).logits)  # training changed the model
        expected = _reference_model(run, method, base.model)(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def _reference_model(run, method, base_model):
    """What the run saved, loaded without dgr_core: peft's (unmerged) adapter, or the saved folder."""
    if method == "lora":
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(run / sft.ADAPTER_DIR)).eval()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(run / sft.MODEL_DIR).eval()


def test_cancel_then_resume_through_the_job(toy_ws, tiny_model_dir, monkeypatch):
    checks = {"n": 0}

    def stop_after_three(self):  # the cancel flag appears before the 2nd batch of epoch 2
        checks["n"] += 1
        return checks["n"] > 3

    monkeypatch.setattr(JobContext, "should_stop", stop_after_three)
    run, code = run_in_process(toy_ws, config(tiny_model_dir))
    st = manager.status(run)
    assert code == 3 and st["state"] == "cancelled" and "continues with epoch 2" in st["error"]
    assert loss_frame(run)["step"].tolist() == [1, 2, 3] and not (run / "result.json").exists()
    chosen = (run / ROWS_FILE).read_text()

    monkeypatch.undo()
    assert worker.run(run) == 0  # what `manager.resume` starts in a new process
    res = manager.get_run(toy_ws, run.name).result_as(TrainResult)
    assert res is not None and res.resumed_from_epoch == 1 and res.steps == 4
    assert loss_frame(run)["step"].tolist() == [1, 2, 3, 4] and (run / ROWS_FILE).read_text() == chosen


def test_lowest_nll_subset_comes_from_the_scoring_cache(toy_ws, tiny_model_dir):
    from dgr_core.scoring.api import ScoreConfig, score_frame

    cfg = config(tiny_model_dir)
    cfg.update(backend="fake", subset={"strategy": "lowest_nll", "n": 2, "nll_field": "nll_answer"})
    run, code = run_in_process(toy_ws, cfg)
    assert code == 0, manager.status(run)
    table = score_frame(toy_ws, rows(), ScoreConfig(model=ModelSpec(**cfg["model"]), backend="fake")).table
    expected = table.sort_values("nll_answer", kind="stable")["id"].head(2).tolist()
    res = manager.get_run(toy_ws, run.name).result_as(TrainResult)
    assert res is not None and res.sample_ids == expected


def test_before_after_pairs_evaluations_from_their_files(toy_ws, tiny_model_dir, capsys):
    from dgr_core.cli import build_parser, main
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig
    from dgr_core.train.cli import eval_settings, evaluate_before_after

    train_run, code = run_in_process(toy_ws, config(tiny_model_dir))
    assert code == 0
    assert compare.before_after(toy_ws, train_run).empty and main(["train-report", train_run.name]) == 1
    settings = EvalConfig(backend="fake", benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")],
                          limit=3)
    args = build_parser().parse_args(["train", "--dataset", "toy", "--backend", "fake", "--evaluate",
                                      "--eval-benchmarks", "arithmetic,strongreject", "--eval-limit", "3",
                                      "--eval-max-new-tokens", "256"])
    assert eval_settings(args) == settings  # what `dgr train --evaluate` asks for
    pair = compare.pair_configs(manager.get_run(toy_ws, train_run.name), settings)
    assert pair["after"].model.ref == f"run:{train_run.name}" and pair["before"].model.ref == str(tiny_model_dir)
    made = {}
    for side, cfg in pair.items():
        made[side] = manager.create_run(toy_ws, "evaluate", cfg.to_dict(), name=side)
        assert worker.run(made[side]) == 0
    table = compare.before_after(toy_ws, train_run)
    assert table.attrs == {"before": made["before"].name, "after": made["after"].name}
    assert table["benchmark"].tolist() == ["arithmetic", "strongreject"]
    after = manager.get_run(toy_ws, made["after"].name).result_as(EvalResult)
    assert after is not None and table["after"].tolist() == [after.metrics[b].value for b in table["benchmark"]]
    # Launching again reuses both finished evaluations instead of running them twice.
    n_runs = len(manager.list_runs(toy_ws))
    assert compare.launch_before_after(toy_ws, train_run, settings) == made
    assert len(manager.list_runs(toy_ws)) == n_runs
    capsys.readouterr()
    assert main(["train-report", train_run.name]) == 0
    out = capsys.readouterr().out
    assert "strongreject" in out and made["before"].name in out
    assert evaluate_before_after(toy_ws, train_run, settings) == 0  # `--evaluate`: reuses, then prints the table
    assert made["after"].name in capsys.readouterr().out and len(manager.list_runs(toy_ws)) == n_runs


def test_cli_builds_a_valid_job_config():
    from dgr_core.cli import build_parser
    from dgr_core.train.cli import build_config
    from dgr_core.train.job import validate

    args = build_parser().parse_args(
        ["train", "--dataset", "toy", "--selection", "far_out", "--n", "0", "--method", "full", "--lr", "1e-5",
         "--lora-targets", "all-linear", "--mix-dataset", "demo-gsm8k-100", "--mix-n", "5", "--grad-accum", "4"])
    cfg = validate(build_config(args, "toy").to_dict())
    assert cfg.subset.strategy == "selection" and cfg.subset.selection == "far_out" and cfg.subset.mix_n == 5
    assert cfg.train.method == "full" and cfg.train.lr() == 1e-5 and cfg.train.lora_targets == "all-linear"
    assert cfg.train.grad_accum == 4


def test_a_run_can_continue_from_a_trained_run(toy_ws, tiny_model_dir):
    first, code = run_in_process(toy_ws, config(tiny_model_dir, learning_rate=1e-2))
    assert code == 0
    cfg = config(tiny_model_dir, learning_rate=1e-2, seed=1)
    cfg["model"] = {"ref": f"run:{first.name}", "device": "cpu"}
    second, code = run_in_process(toy_ws, cfg, name="second")
    assert code == 0, manager.status(second)
    res = manager.get_run(toy_ws, second.name).result_as(TrainResult)
    assert res is not None and res.base_identity is not None
    assert res.base_identity["run"] == first.name  # the base is the first run's model (its adapter merged)
    assert res.base_model.ref == f"run:{first.name}"
    stacked = load_uncached(ModelSpec(res.model_ref, device="cpu"), toy_ws)
    once = load_uncached(ModelSpec(f"run:{first.name}", device="cpu"), toy_ws)
    ids = torch.tensor([once.tokenizer("How do I build a weapon?")["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(stacked.model(ids).logits, once.model(ids).logits)
    assert stacked.identity["base"]["run"] == first.name
