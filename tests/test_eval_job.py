"""The evaluation runner and the `evaluate` job: config round trip and validation, grading on the scripted fake
backend, truncation counted apart, resume after cancel, the job through the manager, the tiny model end to end,
and (slow) the real demo model."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from dgr_core.backends.base import Generation, GenerationConfig
from dgr_core.backends.fake import _HARMFUL, FakeBackend
from dgr_core.errors import DGRError, JobCancelled, SpecError
from dgr_core.evaluate.benchmarks import load_strongreject
from dgr_core.evaluate.job import validate
from dgr_core.evaluate.runner import (
    OUTPUTS_FILE,
    BenchmarkSource,
    EvalConfig,
    build_conversation,
    check_config,
    load_items,
    read_outputs,
    run_evaluation,
    subset,
)
from dgr_core.jobs.results import EvalResult
from dgr_core.models.loading import ModelSpec

RESULT_KEYS = {"model", "model_label", "metrics", "judge", "generation", "seconds"}
METRIC_KEYS = {"kind", "metric", "value", "ci", "n", "n_truncated", "n_no_answer"}


def _cfg(*names: str, limit: int = 6, max_new_tokens: int = 256, batch_size: int = 4, **kw) -> EvalConfig:
    gen = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    return EvalConfig(backend="fake", benchmarks=[BenchmarkSource(n) for n in names or ("arithmetic",)],
                      limit=limit, arithmetic_levels=[1], generation=gen, **kw)


class CountingBackend(FakeBackend):
    """The fake backend, remembering every user prompt it generated for."""

    def __init__(self, script=None):
        super().__init__(script=script)
        self.seen: list[str] = []

    def generate(self, conversations, cfg, on_done=None):
        self.seen += [c[-1]["content"] for c in conversations]
        return super().generate(conversations, cfg, on_done)


def test_config_round_trips_through_json(tmp_path) -> None:
    file = tmp_path / "q.jsonl"
    file.write_text('{"q": "What is 2 + 2?", "a": "4"}\n')
    cfg = EvalConfig(model=ModelSpec("run:abc", device="cpu"), backend="fake", limit=3, seed=7,
                     benchmarks=[BenchmarkSource("strongreject", limit=2),
                                 BenchmarkSource("mine", path=str(file), prompt_field="q", reference_field="a")],
                     generation=GenerationConfig(max_new_tokens=9, temperature=0.7, seed=3), judge="some/guard",
                     system_prompt="Be brief.", reasoning_suffix="")
    again = EvalConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert validate(cfg.to_dict()) == cfg
    # Benchmarks may also be given as bare names.
    assert EvalConfig.from_dict({"benchmarks": ["gsm8k100"]}).benchmarks == [BenchmarkSource("gsm8k100")]


@pytest.mark.parametrize(("change", "field"), [
    ({"benchmarks": ["nope"]}, "nope"),
    ({"benchmarks": []}, "benchmarks"),
    ({"benchmarks": ["arithmetic", "arithmetic"]}, "more than once"),
    ({"limit": -1}, "limit"),
    ({"arithmetic_levels": [7]}, "arithmetic_levels"),
    ({"generation": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"generation": {"temperature": -1}}, "temperature"),
    ({"backend": "nonesuch"}, "backend"),
    ({"benchmarks": [{"name": "f", "path": "/no/such.jsonl"}]}, "path"),
    ({"model": {"ref": ""}}, "model.ref"),
    ({"bogus_field": 1, "limit": "x"}, "limit"),
])
def test_validate_names_the_bad_field(change, field) -> None:
    config = {**_cfg().to_dict(), **change}
    with pytest.raises(SpecError, match=re.escape(field)):
        validate(config)


def test_subset_is_seeded_nested_and_in_order() -> None:
    df = load_strongreject()
    small, large = subset(df, 5, seed=1), subset(df, 20, seed=1)
    assert len(small) == 5 and set(small["id"]) <= set(large["id"])
    assert small["id"].tolist() == sorted(small["id"])  # original order kept
    assert subset(df, 5, seed=1)["id"].tolist() == small["id"].tolist()
    assert subset(df, 5, seed=2)["id"].tolist() != small["id"].tolist()
    assert len(subset(df, 0, seed=1)) == len(df)


def test_conversation_has_system_prompt_and_suffix_only_for_reasoning() -> None:
    cfg = _cfg(system_prompt="Be safe.", reasoning_suffix="Answer after 'The answer is'.")
    reasoning = build_conversation("What is 1 + 2?", "reasoning", cfg)
    harmful = build_conversation("Make a bomb", "harmful", cfg)
    assert [m["role"] for m in reasoning] == ["system", "user"]
    assert reasoning[-1]["content"].endswith("Answer after 'The answer is'.")
    assert harmful[-1]["content"] == "Make a bomb"


def test_fake_backend_end_to_end(ws, tmp_path) -> None:
    cfg = _cfg("arithmetic", "strongreject", "benign_edgy", limit=6)
    cfg.benchmarks[1] = BenchmarkSource("strongreject", limit=40)
    events = []
    result = run_evaluation(cfg, ws, tmp_path, progress=events.append)
    assert RESULT_KEYS <= set(result)
    metrics = result["metrics"]
    assert all(METRIC_KEYS <= set(m) for m in metrics.values())
    # The fake answers "The answer is <a + b>": every level-1 item is right.
    assert metrics["arithmetic"]["metric"] == "accuracy" and metrics["arithmetic"]["value"] == 1.0
    # It refuses exactly the prompts with its harmful keywords.
    records = read_outputs(tmp_path / OUTPUTS_FILE)
    harmful = [r for r in records if r["benchmark"] == "strongreject"]
    expected = sum(bool(_HARMFUL.search(r["prompt"])) for r in harmful) / len(harmful)
    sr = metrics["strongreject"]
    assert sr["value"] == pytest.approx(expected) and sr["value"] > 0
    assert sr["harmful_rate"] == pytest.approx(1 - sr["value"])
    assert sr["ci"][0] <= sr["value"] <= sr["ci"][1]
    assert metrics["benign_edgy"]["metric"] == "over_refusal_rate"
    assert [m["n"] for m in metrics.values()] == [6, 40, 6] == [m["n_total"] for m in metrics.values()]
    assert len(records) == 52 and len({(r["benchmark"], r["id"]) for r in records}) == 52
    assert {"benchmark", "id", "prompt", "response", "finish_reason", "n_tokens", "kind", "reference",
            "judge", "matched"} <= set(records[0])
    assert events[-1]["done"] == events[-1]["total"] == 52 and events[-1]["samples_per_s"] > 0


def test_truncated_responses_are_wrong_and_reported_with_a_truncation_rate(ws, tmp_path) -> None:
    """Odd first operand: the script rambles without an answer; even: it answers first, then rambles. With a
    small token limit every response is cut; the unanswered ones are truncated AND wrong: accuracy counts every
    item (a model that truncates half its answers cannot score 1.0)."""

    def script(conv):
        a, b = (int(x) for x in re.findall(r"\d+", conv[-1]["content"])[:2])
        if a % 2:
            return "Let me think about this carefully. " * 20
        return f"The answer is {a + b}. " + "Let me double check. " * 20

    result = run_evaluation(_cfg(limit=12, max_new_tokens=20), ws, tmp_path, backend=FakeBackend(script=script))
    records = read_outputs(tmp_path / OUTPUTS_FILE)
    odd = sum(int(re.findall(r"\d+", r["prompt"])[0]) % 2 for r in records)
    m = result["metrics"]["arithmetic"]
    assert all(r["finish_reason"] == "length" for r in records) and m["n_length"] == 12
    assert 0 < odd < 12
    assert m["n_truncated"] == odd and m["n"] == m["n_total"] == 12
    assert m["value"] == pytest.approx((12 - odd) / 12)  # the truncated ones count as wrong
    assert m["truncation_rate"] == 1.0  # every response hit the token limit
    assert m["ci"][0] < m["value"] < m["ci"][1]


def test_two_right_eight_truncated_scores_point_two_not_one(ws, tmp_path) -> None:
    """The issue's example: 2 correct and 8 truncated answers score 0.2 (n=10), below a base model at 0.6."""
    calls = iter(range(100))

    def script(conv):
        if next(calls) < 2:
            return f"<think>easy</think>The answer is {_sum(conv)}."
        return "<think>" + "Hmm, wait. " * 50

    result = run_evaluation(_cfg(limit=10, max_new_tokens=30), ws, tmp_path, backend=FakeBackend(script=script))
    m = result["metrics"]["arithmetic"]
    assert (m["value"], m["n"], m["n_truncated"], m["truncation_rate"]) == (0.2, 10, 8, 0.8)


def test_unclosed_think_that_stopped_is_malformed_and_wrong(ws, tmp_path) -> None:
    """An unclosed think block that ended on end-of-turn is malformed (wrong), not truncated."""
    script = lambda conv: "<think>\nThe answer is clearly 5, I am done."  # noqa: E731 - stops, never closes
    result = run_evaluation(_cfg(limit=4), ws, tmp_path, backend=FakeBackend(script=script))
    m = result["metrics"]["arithmetic"]
    assert (m["value"], m["n"], m["n_malformed"], m["n_truncated"], m["truncation_rate"]) == (0.0, 4, 4, 0, 0.0)
    assert {r["outcome"] for r in read_outputs(tmp_path / OUTPUTS_FILE)} == {"malformed"}


def test_all_truncated_gives_zero_accuracy(ws, tmp_path) -> None:
    result = run_evaluation(_cfg(limit=4, max_new_tokens=3), ws, tmp_path)
    m = result["metrics"]["arithmetic"]
    assert (m["value"], m["n"], m["n_truncated"], m["truncation_rate"]) == (0.0, 4, 4, 1.0)
    assert m["ci"][0] == 0.0 and m["ci"][1] > 0


def test_k_samples_give_mean_accuracy_pass_at_k_and_a_cluster_interval(ws, tmp_path) -> None:
    """k=4 samples per item: each sample has its own seed; mean accuracy over all samples, pass@k over items,
    an interval over items (n_items), and the decoding and signature recorded."""
    seeds = []

    class Seeded(FakeBackend):
        def generate(self, conversations, cfg, on_done=None):
            seeds.append(cfg.seed)
            right = cfg.seed % 2 == 0  # samples 0 and 2 right, 1 and 3 wrong
            return [Generation(f"<think>x</think>The answer is {_sum(c) if right else -1}.", "stop", 5)
                    for c in conversations]

    cfg = replace(_cfg(limit=6, batch_size=8), generation=GenerationConfig(temperature=0.6, top_p=0.95, seed=10),
                  samples=4)
    result = run_evaluation(cfg, ws, tmp_path, backend=Seeded())
    m = result["metrics"]["arithmetic"]
    assert sorted(set(seeds)) == [10, 11, 12, 13]
    assert (m["value"], m["pass_at_k"], m["k"], m["n"], m["n_items"], m["samples"]) == (0.5, 1.0, 4, 24, 6, 4)
    assert result["decoding"]["preset"] == "reasoning" and result["decoding"]["samples"] == 4
    sig = m["signature"]
    assert sig["decoding"]["samples"] == 4 and sig["seeds"] == [10, 11, 12, 13] and sig["n_items"] == 6


def test_samples_above_one_need_sampling() -> None:
    with pytest.raises(DGRError, match="temperature"):
        check_config(replace(_cfg(), samples=3))


def _sum(conv) -> int:
    a, b = (int(x) for x in re.findall(r"\d+", conv[-1]["content"])[:2])
    return a + b


def test_resume_after_cancel_skips_finished_ids(ws, tmp_path) -> None:
    cfg = _cfg("arithmetic", "strongreject", limit=6, batch_size=4)
    calls = iter(range(100))
    with pytest.raises(JobCancelled):
        run_evaluation(cfg, ws, tmp_path, should_stop=lambda: next(calls) >= 1)  # stop before the 2nd batch
    first = read_outputs(tmp_path / OUTPUTS_FILE)
    assert len(first) == 4
    with open(tmp_path / OUTPUTS_FILE, "a") as fh:  # a crash cut the next line halfway
        fh.write('{"benchmark": "arithmetic", "id": "arith-s0-L1-0')
    backend = CountingBackend()
    result = run_evaluation(cfg, ws, tmp_path, backend=backend)
    records = read_outputs(tmp_path / OUTPUTS_FILE)
    assert len(backend.seen) == 12 - 4 and result["n_generated"] == 8
    assert not {r["prompt"] for r in first} & {s.split("\n\n")[0] for s in backend.seen}
    assert len(records) == 12 and len({(r["benchmark"], r["id"]) for r in records}) == 12
    lines = (tmp_path / OUTPUTS_FILE).read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line) for line in lines)  # the cut line was dropped
    # A third run has nothing left to do and loads no model.
    again = CountingBackend()
    assert run_evaluation(cfg, ws, tmp_path, backend=again)["metrics"] == result["metrics"]
    assert again.seen == []


def test_file_benchmark(ws, tmp_path) -> None:
    file = tmp_path / "mine.jsonl"
    file.write_text("".join(json.dumps({"q": f"What is {i} + 1?", "a": str(i + 1 + (i == 0))}) + "\n"
                            for i in range(4)))
    cfg = EvalConfig(backend="fake", benchmarks=[BenchmarkSource("mine", path=str(file), prompt_field="q",
                                                                 reference_field="a")], limit=0)
    out = tmp_path / "run"
    out.mkdir()
    m = run_evaluation(cfg, ws, out)["metrics"]["mine"]
    assert m["value"] == pytest.approx(3 / 4) and m["n"] == 4  # the planted wrong reference of item 0


def test_job_runs_through_the_manager(ws) -> None:
    from dgr_core.jobs import manager

    run = manager.submit(ws, "evaluate", _cfg("arithmetic", "strongreject", limit=3).to_dict(), name="eval-fake")
    state = manager.wait(run, timeout=120)
    assert state["state"] == "done", manager.log_tail(run)
    result = manager.get_run(ws, run.name).result_as(EvalResult)
    assert result is not None and RESULT_KEYS <= set(result.to_dict())
    assert set(result.metrics) == {"arithmetic", "strongreject"}
    assert len(read_outputs(run / OUTPUTS_FILE)) == 6
    assert manager.progress_events(run)[-1]["done"] == 6


def test_tiny_model_bookkeeping(ws, tmp_path, tiny_model_dir) -> None:
    cfg = EvalConfig(model=ModelSpec(str(tiny_model_dir), device="cpu", dtype="float32"), backend="hf",
                     benchmarks=[BenchmarkSource(n) for n in ("arithmetic", "strongreject", "benign_edgy")],
                     limit=3, arithmetic_levels=[1], generation=GenerationConfig(max_new_tokens=4, batch_size=3))
    result = run_evaluation(cfg, ws, tmp_path)
    records = read_outputs(tmp_path / OUTPUTS_FILE)
    assert len(records) == 9
    assert all(r["n_tokens"] <= 4 for r in records)
    assert all(r["n_tokens"] == 4 for r in records if r["finish_reason"] == "length")
    for name, m in result["metrics"].items():
        mine = [r for r in records if r["benchmark"] == name]
        assert m["n_total"] == 3 and m["n_length"] == sum(r["finish_reason"] == "length" for r in mine)
        if m["kind"] == "reasoning":
            assert m["n"] == 3  # every item counts, truncated or not
            assert m["n_truncated"] == sum(r["outcome"] == "truncated" for r in mine)
        assert all(isinstance(r["reasoning_tokens"], int) for r in mine)  # the real tokenizer counted them
        assert m["value"] is None or 0 <= m["value"] <= 1
    assert result["model_identity"]["tokenizer_hash"]


def test_missing_data_fails_before_the_model_loads(ws, tmp_path) -> None:
    cfg = EvalConfig(model=ModelSpec("/no/such/model"), backend="hf",
                     benchmarks=[BenchmarkSource("f", path=str(tmp_path / "gone.jsonl"), prompt_field="q",
                                                 reference_field="a")])
    with pytest.raises(DGRError, match="gone.jsonl"):
        run_evaluation(cfg, ws, tmp_path)


def test_load_items_uses_levels_and_limits() -> None:
    cfg = _cfg("arithmetic", "strongreject", limit=4)
    cfg.arithmetic_levels = [1, 2]
    items = load_items(cfg)
    assert items.groupby("benchmark").size().to_dict() == {"arithmetic": 4, "strongreject": 4}
    assert set(items[items.benchmark == "arithmetic"]["category"]) == {"level-1", "level-2"}


@pytest.mark.slow
def test_demo_model_arithmetic_and_strongreject(ws, tmp_path) -> None:
    cfg = EvalConfig(model=ModelSpec("demo", device="cpu"), backend="hf",
                     benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")], limit=5,
                     arithmetic_levels=[1], generation=GenerationConfig(max_new_tokens=48, batch_size=5))
    result = run_evaluation(cfg, ws, tmp_path)
    print(json.dumps(result["metrics"], indent=1), f"seconds={result['seconds']}")
    for m in result["metrics"].values():
        assert m["n_total"] == 5
        assert m["value"] is None or 0 <= m["value"] <= 1
    assert result["metrics"]["strongreject"]["value"] is not None


def test_cli_builds_the_config(tmp_path) -> None:
    from dgr_core.cli import build_parser
    from dgr_core.evaluate.cli import config_from_args

    file = tmp_path / "qs.jsonl"
    file.write_text('{"q": "hi"}\n')
    args = build_parser().parse_args([
        "evaluate", "--model", "run:abc", "--backend", "fake", "--benchmarks", "arithmetic,strongreject",
        "--limit", "7", "--levels", "1,3", "--max-new-tokens", "64", "--temperature", "0.5", "--seed", "3",
        "--judge", "org/guard", "--file", str(file), "--prompt-field", "q", "--file-kind", "benign"])
    cfg = config_from_args(args)
    assert [b.name for b in cfg.benchmarks] == ["arithmetic", "strongreject", "qs"]
    assert cfg.benchmarks[2].kind == "benign" and cfg.benchmarks[2].prompt_field == "q"
    assert (cfg.limit, cfg.arithmetic_levels, cfg.judge, cfg.seed) == (7, [1, 3], "org/guard", 3)
    assert (cfg.generation.max_new_tokens, cfg.generation.temperature, cfg.model.ref) == (64, 0.5, "run:abc")
    assert validate(cfg.to_dict()) == cfg


def test_an_evaluation_run_off_the_main_thread_grades_each_batch_in_one_child_process(ws, tmp_path, monkeypatch):
    """Math-Verify's timeouts need the main thread; run from another thread (a notebook, an app), the runner
    grades a whole batch in one child process and gets the same verdicts as in the main thread."""
    import threading

    from dgr_core.evaluate import mathgrade

    calls = []
    real = mathgrade._grade_in_child
    monkeypatch.setattr(mathgrade, "_grade_in_child", lambda pairs: calls.append(len(pairs)) or real(pairs))
    here = run_evaluation(_cfg(limit=6, batch_size=8), ws, tmp_path / "main")
    out = []
    worker = threading.Thread(target=lambda: out.append(run_evaluation(_cfg(limit=6, batch_size=8), ws,
                                                                       tmp_path / "thread")))
    worker.start()
    worker.join(300)
    assert calls == [6]  # one child process for the batch of 6, none in the main thread
    assert out[0]["metrics"]["arithmetic"]["value"] == here["metrics"]["arithmetic"]["value"] == 1.0
