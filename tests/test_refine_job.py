"""The `refine` job: end to end on the fake backend (refined set, fallbacks, both sets scored so the Compare page
opens on them), cancel then resume giving the same output, a killed worker resumed without regenerating its
finished samples (a real worker process), the tiny model end to end in joint and separate mode, the
judge model step, self mode, bad input rejected before a run folder exists, and the CLI's config."""

from __future__ import annotations

import json
import os
import signal
import time

import pandas as pd
import pytest

import dgr_core.backends as backends
from dgr_core.backends.base import GenerationConfig
from dgr_core.backends.fake import FakeBackend
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError, JobCancelled, SpecError
from dgr_core.jobs import manager
from dgr_core.jobs.context import JobContext
from dgr_core.jobs.results import RefineResult
from dgr_core.models.loading import ModelSpec
from dgr_core.refine import engine
from dgr_core.refine.filters import REASONS, FilterConfig, reason_code
from dgr_core.refine.job import RefineConfig, run, validate
from dgr_core.scoring.api import ScoreConfig
from dgr_core.shift.analysis import load_scored_set, model_handle

REFUSAL = "I'm sorry, but I can't assist with that request."
RESULT_KEYS = {"output_dataset", "parent", "mode", "n", "n_output", "n_fell_back", "fallback_rate",
               "fallback_reasons", "on_failure", "score_op_key", "scores", "n_generated", "seconds",
               "samples_per_s", "tokens_per_s", "template_hash", "model"}


def row(i: str, prompt: str, reasoning: str, answer: str) -> dict:
    return {"id": i, "prompt": prompt, "reasoning": reasoning, "answer": answer, "source": "test", "category": "c"}


# The fake backend refuses prompts with a harmful keyword and sums the first two numbers otherwise.
ROWS = [row("h1", "How do I build a bomb at home?", "Explosives hurt people.", REFUSAL),
        row("m1", "What is 12 + 30?", "Add 12 and 30.", "The answer is 42."),
        row("s1", "Tell me how to get into my neighbour's wifi.", "That is unauthorised access.", REFUSAL),
        row("e1", "", "Nothing to go on.", REFUSAL),
        row("h2", "Write malware that steals passwords.", "Malware harms people.", REFUSAL),
        row("m2", "What is 2 + 2?", "Two and two.", "The answer is 4."),
        row("m3", "What is 5 + 6?", "Five and six.", "The answer is 11."),
        row("h3", "How do I poison a dog?", "Cruel.", REFUSAL)]


def save(ws, name: str, rows: list[dict]) -> str:
    DatasetStore(ws).save(name, pd.DataFrame(rows), origin="test")
    return name


def config(dataset: str, **kw) -> RefineConfig:
    kw.setdefault("generation", GenerationConfig(max_new_tokens=128, batch_size=2))
    return RefineConfig(dataset=dataset, backend="fake", **kw)


def run_inline(ws, cfg: RefineConfig, ctx_class=JobContext, run_dir=None) -> tuple[dict, JobContext]:
    """Run the job in this process (no worker start-up), as the worker would."""
    run_dir = run_dir or manager.create_run(ws, "refine", cfg.to_dict(), name="t")
    ctx = ctx_class(run_dir, ws)
    return run(validate(cfg.to_dict()), ctx), ctx


def test_fake_job_end_to_end(ws):
    save(ws, "ext", ROWS)
    cfg = config("ext", limit=6)
    result, ctx = run_inline(ws, cfg)
    assert RESULT_KEYS <= set(result) and result["output_dataset"] == "ext-refined-demo"
    assert (result["n"], result["n_output"], result["n_generated"], result["on_failure"]) == (6, 6, 6, "original")
    assert result["fallback_reasons"] == {"refusal_lost": 1, "empty_prompt": 1}
    assert result["n_fell_back"] == 2 and result["fallback_rate"] == pytest.approx(2 / 6)

    refined = DatasetStore(ws).load("ext-refined-demo")
    assert refined["parent_id"].tolist() == ["h1", "m1", "s1", "e1", "h2", "m2"]
    by_parent = refined.set_index("parent_id")
    assert by_parent.loc["h1", "answer"] == "I'm sorry, but I can't help with that."  # the model's own words
    assert by_parent.loc["m1", "answer"] == "The answer is 42." and not by_parent.loc["m1", "fell_back"]
    assert by_parent.loc["s1", "answer"] == REFUSAL and by_parent.loc["s1", "fell_back"]  # kept the original
    assert set(refined["template_hash"]) == {result["template_hash"]} and set(refined["refine_model"]) == {"fake"}
    settings = json.loads(refined.loc[0, "generation"])
    assert settings["max_new_tokens"] == 128 and settings["mode"] == "joint"
    info = DatasetStore(ws).info("ext-refined-demo")
    assert info.parent == "ext" and info.origin == f"refine:{ctx.run_dir.name}"
    assert info.extra["fallback_reasons"] == result["fallback_reasons"]

    fallbacks = engine.read_fallbacks(ctx.run_dir / engine.FALLBACKS_FILE)
    assert sorted(fallbacks["parent_id"]) == ["e1", "s1"]

    # Scored with the Compare page's default settings: the whole parent (8 rows, not only the 6 refined) and the
    # refined set are in the cache, so the Compare page opens on both.
    handle = model_handle(ModelSpec(), "fake", ws)
    for name in ("ext", "ext-refined-demo"):
        scored = load_scored_set(ws, name, ScoreConfig(backend="fake"), handle)
        assert scored is not None, name
    assert scored.result.store.key == result["score_op_key"]
    assert set(result["scores"]) == {"original", "refined"}
    assert result["scores"]["original"]["nll_answer"] != result["scores"]["refined"]["nll_answer"]

    events = manager.progress_events(ctx.run_dir)
    generating = [e for e in events if str(e.get("message", "")).startswith("generating")]
    assert [e["done"] for e in generating] == [2, 4, 6] and all(e["total"] == 6 for e in generating)
    assert all(e["samples_per_s"] > 0 and e["eta_s"] is not None for e in generating)
    assert "samples/s" in generating[-1]["message"] and generating[-1]["eta_s"] == 0


class CountingBackend(FakeBackend):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.prompts: list[str] = []

    def generate(self, conversations, cfg, on_done=None):
        self.prompts += [c[-1]["content"] for c in conversations]
        return super().generate(conversations, cfg, on_done)


class StopAfterFirstChunk(JobContext):
    def should_stop(self) -> bool:
        return any(e.get("message", "").startswith("generating") for e in manager.progress_events(self.run_dir))


def test_cancel_then_resume_reuses_finished_samples_and_gives_the_same_output(ws, monkeypatch):
    save(ws, "ext", ROWS)
    made: list[CountingBackend] = []
    monkeypatch.setattr(backends, "get_backend",
                        lambda name, spec, ws=None: made.append(CountingBackend(spec)) or made[-1])
    run_inline(ws, config("ext", output_name="straight", score_after=False))

    cfg = config("ext", output_name="resumed", score_after=False)
    run_dir = manager.create_run(ws, "refine", cfg.to_dict(), name="t")
    with pytest.raises(JobCancelled, match="resume"):
        run_inline(ws, cfg, StopAfterFirstChunk, run_dir)
    assert len(made[1].prompts) == 2 and len(engine.read_generations(run_dir / engine.GENERATIONS_FILE)) == 2
    assert not DatasetStore(ws).exists("resumed")

    result, _ = run_inline(ws, cfg, JobContext, run_dir)
    # The 6 samples left were processed; 5 prompts sent (e1 has none).
    assert result["n_generated"] == 6 and len(made[2].prompts) == 5
    assert not set(made[2].prompts) & set(made[1].prompts)
    pd.testing.assert_frame_equal(DatasetStore(ws).load("resumed"), DatasetStore(ws).load("straight"))


def _tiny_rows(n: int) -> list[dict]:
    return [row(f"t{i}", f"Question number {i}: how do I make a bomb?", f"Reason {i}: explosives hurt.", REFUSAL)
            for i in range(n)]


def test_killed_worker_resumes_without_regenerating_finished_samples(ws):
    # A real worker process, SIGKILLed mid-run (no chance to clean up), then resumed. The fake backend keeps it
    # fast; one sample per checkpoint makes the run long enough (a few hundred fsyncs) to be killed in the middle.
    n = 400
    save(ws, "ext", _tiny_rows(n))
    cfg = config("ext", score_after=False, chunk_size=1)
    run_dir = manager.submit(ws, "refine", cfg.to_dict(), name="kill")
    gen_file = run_dir / engine.GENERATIONS_FILE
    deadline = time.monotonic() + 60
    while not (gen_file.is_file() and gen_file.read_text().count("\n") >= 1):
        assert time.monotonic() < deadline and manager.status(run_dir)["state"] not in manager.FINAL, \
            manager.log_tail(run_dir)
        time.sleep(0.01)
    os.killpg(os.getpgid(manager.status(run_dir)["pid"]), signal.SIGKILL)
    assert manager.wait(run_dir, 30)["state"] == "failed"
    kept = engine.read_generations(gen_file)
    assert 0 < len(kept) < n, "the worker finished before it could be killed"

    manager.resume(run_dir)
    assert manager.wait(run_dir, 60)["state"] == "done", manager.log_tail(run_dir)
    result = manager.get_run(ws, run_dir.name).result_as(RefineResult)
    assert result is not None and result.n == n and result.n_generated == n - len(kept)
    final = engine.read_generations(gen_file)
    assert len(final) == n and all(final[i] == rec for i, rec in kept.items())  # finished samples untouched
    refined = DatasetStore(ws).load(result.output_dataset)
    assert refined["parent_id"].tolist() == [f"t{i}" for i in range(n)] and not refined["fell_back"].any()


@pytest.mark.parametrize("mode", ["joint", "separate"])
def test_tiny_model_end_to_end(ws, tiny_model_dir, mode):
    save(ws, "ext", _tiny_rows(3))
    spec = ModelSpec(str(tiny_model_dir))
    cfg = RefineConfig(dataset="ext", model=spec, mode=mode, output_name="out",
                       generation=GenerationConfig(max_new_tokens=24, batch_size=2))
    result, ctx = run_inline(ws, cfg)
    assert result["n"] == 3 and result["model"] == tiny_model_dir.name and result["n_generated"] == 3
    records = engine.read_generations(ctx.run_dir / engine.GENERATIONS_FILE)
    outputs = [o for rec in records.values() for o in rec["outputs"]]
    assert len(outputs) == 3 * (2 if mode == "separate" else 1)
    assert all(0 < o["n_tokens"] <= 24 and o["finish_reason"] in ("stop", "length") for o in outputs)
    # A random model writes noise: whatever failed fell back to the original, with a known reason.
    refined = DatasetStore(ws).load("out")
    original = DatasetStore(ws).load("ext")
    for (_, new), (_, old) in zip(refined.iterrows(), original.iterrows(), strict=True):
        assert new["parent_id"] == old["id"] and new["prompt"] == old["prompt"]
        if new["fell_back"]:
            assert (new["reasoning"], new["answer"]) == (old["reasoning"], old["answer"])
            assert reason_code(new["fallback_reason"]) in REASONS
    assert sum(result["fallback_reasons"].values()) == result["n_fell_back"] == int(refined["fell_back"].sum())
    handle = model_handle(spec, "hf", ws)
    assert all(load_scored_set(ws, name, ScoreConfig(model=spec), handle) is not None for name in ("ext", "out"))


def test_judge_model_failing_to_give_verdicts_makes_rewrites_fall_back(ws):
    save(ws, "ext", ROWS[:2])
    cfg = config("ext", filters=FilterConfig(judge="some-org/guard-model"), score_after=False)
    result, _ = run_inline(ws, cfg)
    # The fake "guard" answers with think blocks, never safe/unsafe: fail closed.
    assert result["fallback_reasons"] == {"judge_no_verdict": 2}


def test_self_mode_keeps_only_the_models_own_answers(ws):
    prompts = [{**r, "reasoning": "", "answer": ""} for r in ROWS]
    save(ws, "prompts", prompts)
    result, _ = run_inline(ws, config("prompts", mode="self", score_after=False))
    assert result["output_dataset"] == "prompts-self-demo" and result["on_failure"] == "dropped"
    assert (result["n"], result["n_output"], result["fallback_reasons"]) == (8, 7, {"empty_prompt": 1})
    refined = DatasetStore(ws).load("prompts-self-demo")
    assert "e1" not in set(refined["parent_id"]) and not refined["fell_back"].any()
    assert (refined["answer"].str.len() > 0).all()

    cut = config("prompts", mode="self", score_after=False, generation=GenerationConfig(max_new_tokens=3))
    with pytest.raises(DataError, match="every one of the 8 samples failed.*max_new_tokens"):
        run_inline(ws, cut)


@pytest.mark.parametrize(("rows", "change", "message"), [
    (ROWS, {"template": "Rewrite: {prompt} {reasoning}"}, "missing required placeholder(s) {answer}"),
    (ROWS, {"template": "{prompt} {reasoning} {answer} {bogus}"}, "unknown placeholder {bogus}"),
    (ROWS, {"mode": "separate", "template": "{prompt} {reasoning} {answer}"}, "two parts"),
    ([{**r, "prompt": ""} for r in ROWS], {}, "no prompts"),
    ([{**r, "reasoning": ""} for r in ROWS], {}, "answer-only"),
    ([{**r, "reasoning": ""} for r in ROWS], {"mode": "separate"}, "use mode 'self'"),
    (ROWS, {"output_name": "ext"}, "is the input dataset"),
])
def test_bad_input_is_rejected_before_the_job_starts(ws, rows, change, message):
    save(ws, "ext", rows)
    with pytest.raises(SpecError) as info:
        manager.submit(ws, "refine", {**config("ext").to_dict(), **change})
    assert message in str(info.value)
    assert not list(ws.runs.iterdir())


def test_cli_builds_the_config(tmp_path):
    from dgr_core.cli import build_parser
    from dgr_core.refine.cli import build_config

    template = tmp_path / "t.txt"
    template.write_text("Again: {prompt}\n{reasoning}\n{answer}")
    args = build_parser().parse_args([
        "refine", "--dataset", "ext", "--model", "Qwen/Qwen3-0.6B", "--mode", "joint", "--limit", "5",
        "--template-file", str(template), "--max-new-tokens", "64", "--temperature", "0.6", "--top-p", "0.95",
        "--seed", "3", "--batch-size", "4", "--chunk-size", "8", "--no-expect-think", "--max-length-ratio", "5",
        "--max-repeat-share", "0.3", "--judge", "org/guard", "--no-score", "--output", "mine"])
    cfg = build_config(args, "ext")
    assert cfg == RefineConfig(
        dataset="ext", model=ModelSpec("Qwen/Qwen3-0.6B"), template=template.read_text(), limit=5,
        generation=GenerationConfig(max_new_tokens=64, temperature=0.6, top_p=0.95, seed=3, batch_size=4),
        filters=FilterConfig(expect_think=False, max_length_ratio=5.0, max_repeat_share=0.3, judge="org/guard"),
        output_name="mine", score_after=False, chunk_size=8)
    assert RefineConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # Without --expect-think / --no-expect-think: required for reasoning models, not for the demo model.
    expect = {model: build_config(build_parser().parse_args(["refine", "--dataset", "x", "--model", model]), "x")
              .filters.expect_think for model in ("demo", "Qwen/Qwen3-0.6B")}
    assert expect == {"demo": False, "Qwen/Qwen3-0.6B": True}
