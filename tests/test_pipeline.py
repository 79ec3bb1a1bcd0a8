"""The "demo" pipeline (DGR in miniature): config, plan, held-out draw, the run itself, and its panel.

Most tests run the demo job in this process on stub child kinds (instant; the registry is monkeypatched) to pin
down progress forwarding, cancel and resume. One test runs the real refine / score / train / evaluate kinds end to
end through the CLI and a worker process, with the fake backend and the tiny random Llama, and reads the result
back the way the Safety-tax page does. The panel (dgr_ui.demo_panel) is opened in AppTest.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dgr_core.errors import JobCancelled, SpecError
from dgr_core.jobs import kinds, manager
from dgr_core.jobs.context import JobContext
from dgr_core.jobs.kinds import JobKind
from dgr_core.jobs.results import DemoResult, DemoRow
from dgr_core.models.loading import ModelSpec
from dgr_core.pipeline import (
    DemoConfig,
    demo_pivot,
    demo_table,
    draw_original,
    plan_steps,
    read_steps,
    run_inline,
    step_table,
    validate,
)

SMALL_EVAL = {"arithmetic": 3, "strongreject": 3, "benign_edgy": 2}


def small_config(model: str = "stub", **kw) -> DemoConfig:
    base = dict(model=ModelSpec(model), backend="fake", n_refine=4, budgets=[2], seeds=[0], epochs=1,
                refine_max_new_tokens=64, eval_max_new_tokens=32, eval_limits=dict(SMALL_EVAL), batch_size=4)
    return DemoConfig(**{**base, **kw})


# ---------------------------------------------------------------- config and plan


def test_config_round_trips_through_json():
    cfg = small_config(seeds=[0, 3])
    again = DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize("change, field", [({"budgets": [2, 5]}, "budgets"), ({"budgets": []}, "budgets"),
                                           ({"budgets": [2, 2]}, "budgets"), ({"learning_rate": 0}, "learning_rate"),
                                           ({"seeds": []}, "seeds"),
                                           ({"seeds": [1, 1]}, "seeds"), ({"epochs": 0}, "epochs"),
                                           ({"eval_limits": {"gsm8k100": 0}}, "eval_limits.gsm8k100"),
                                           ({"backend": "nope"}, "backend")])
def test_validate_names_the_bad_field(change, field):
    with pytest.raises(SpecError, match=field):
        validate({**small_config().to_dict(), **change})


def test_validate_rejects_unknown_keys():
    with pytest.raises(SpecError, match="n_refin"):
        validate({"n_refin": 3})


def test_plan_trains_before_it_evaluates_and_scales_with_budgets_and_seeds():
    for budgets, seeds in (([2], [0]), ([1, 2, 4], [0, 1])):
        cfg = small_config(budgets=budgets, seeds=seeds)
        steps = plan_steps(cfg)
        keys = [s.key for s in steps]
        assert len(keys) == len(set(keys)) == 3 + 2 * cfg.n_runs + 1 and cfg.n_runs == 2 * len(budgets) * len(seeds)
        for n in budgets:
            for seed in seeds:
                for which in ("original", "refined"):
                    assert keys.index(f"train-{which}-n{n}-s{seed}") < keys.index(f"eval-sft-{which}-n{n}-s{seed}")


def test_the_defaults_are_a_sweep_evaluated_identically():
    """Issue 13: >= 2 sets x 3 budgets x 2 seeds, every model evaluated on the same items with the same decoding,
    >= 100 reasoning items, AdvBench-50 (never trained on) and XSTest."""
    from dgr_core.pipeline import eval_config

    cfg = DemoConfig()
    assert cfg.n_runs >= 12 and len(cfg.budgets) >= 3 and len(cfg.seeds) >= 2
    assert cfg.eval_limits["arithmetic"] >= 100 and {"advbench50", "xstest"} <= set(cfg.eval_limits)
    base = eval_config(cfg, cfg.model)
    trained = eval_config(cfg, ModelSpec("run:x"))
    assert {k: v for k, v in base.items() if k != "model"} == {k: v for k, v in trained.items() if k != "model"}


@pytest.mark.parametrize("key, parsed", [("train-refined-n10-s0", ("refined", 10, 0)),
                                         ("eval-sft-original-n5-s3", ("original", 5, 3)),
                                         ("eval-base", ("eval-base", None, None))])
def test_arm_keys_parse(key, parsed):
    from dgr_core.pipeline import parse_arm, split_label

    assert parse_arm(key) == parsed
    assert split_label("sft-refined-n10-s1") == ("sft-refined", 10, 1) and split_label("base") == ("base", None, None)


def test_draw_leaves_out_the_evaluation_prompts_and_is_seeded():
    external = pd.DataFrame({"id": [f"x{i}" for i in range(30)], "prompt": [f"p{i}" for i in range(30)]})
    held = {f"p{i}" for i in range(0, 30, 2)}
    cfg = small_config(n_refine=10)
    drawn = draw_original(external, cfg, held)
    assert len(drawn) == 10 and not set(drawn["prompt"]) & held
    assert drawn.equals(draw_original(external, cfg, held))
    with pytest.raises(Exception, match="n_refine"):
        draw_original(external, small_config(n_refine=16), held)


def test_cli_builds_the_config(ws):
    from dgr_core.cli import build_parser
    from dgr_core.pipeline import config_from_args

    args = build_parser().parse_args(["demo", "--backend", "fake", "--n-refine", "6", "--budgets", "3", "6",
                                      "--seeds", "0", "1", "--lr", "2e-4", "--eval-limit", "gsm8k100=5"])
    cfg = config_from_args(args)
    assert (cfg.n_refine, cfg.budgets, cfg.seeds, cfg.eval_limits["gsm8k100"]) == (6, [3, 6], [0, 1], 5)
    assert cfg.learning_rate == 2e-4
    assert validate(cfg.to_dict()) == cfg
    assert not cfg.expect_think
    assert config_from_args(build_parser().parse_args(["demo", "--expect-think"])).expect_think


@pytest.mark.parametrize("expect_think", [False, True])
def test_refine_step_passes_the_think_requirement_and_keeps_the_scores_apart(expect_think):
    """The demo model writes no <think> block: with the requirement on, every rewrite would fall back."""
    from dgr_core.pipeline import dataset_names, refine_config
    from dgr_core.refine.job import RefineConfig

    cfg = RefineConfig.from_dict(refine_config(small_config(expect_think=expect_think), dataset_names("t")))
    assert cfg.filters.expect_think is expect_think
    assert (cfg.dataset, cfg.effective_output, cfg.mode, cfg.score_after) == ("t-original", "t-refined", "joint", False)
    # The demo's own template: the model refuses in its own words instead of copying the refusal sentence.
    assert "own words" in cfg.effective_template and "{prompt}" in cfg.effective_template


def test_pivot_averages_seeds_and_keeps_models_without_a_value():
    rows = [("base", None, None, 0.1), ("sft-original", 5, 0, 0.2), ("sft-original", 5, 1, 0.4),
            ("sft-refined", 5, 0, None), ("sft-original", 10, 0, 0.5)]
    table = [{"model": m, "n_train": n, "seed": s, "benchmark": "gsm8k100", "metric": "accuracy", "value": v}
             for m, n, s, v in rows]
    table += [{"model": m, "n_train": n, "seed": 0, "benchmark": "strongreject", "metric": "refusal_rate",
               "value": 0.5} for m, n in (("sft-refined", 5), ("base", None), ("sft-original", 5))]
    wide = demo_pivot(DemoResult(table=[DemoRow(**row) for row in table]))
    assert list(wide.columns) == ["benchmark", "metric", "base", "sft-original N=5", "sft-original N=10",
                                  "sft-refined N=5"]
    # One row per (benchmark, metric) that exists: no gsm8k100 refusal_rate row full of NaN.
    assert list(zip(wide["benchmark"], wide["metric"], strict=True)) == [("gsm8k100", "accuracy"),
                                                                         ("strongreject", "refusal_rate")]
    assert wide["sft-original N=5"][0] == pytest.approx(30) and pd.isna(wide["sft-refined N=5"][0])
    assert wide.loc[1, ["base", "sft-original N=5", "sft-refined N=5"]].tolist() == [50, 50, 50]


# ---------------------------------------------------------------- the run, on stub child kinds


def _stub_kind(name: str, run) -> JobKind:
    """The real kind's Config and Result types around a stub `run` that reads its config as a dict."""
    real = kinds.get_kind(name)
    return JobKind(name, real.config, real.result, lambda cfg, ctx: run(cfg.to_dict(), ctx))


class Stubs:
    """Instant stand-ins for refine / score / train / evaluate that record every run and can cancel mid-way."""

    def __init__(self):
        self.calls: list[str] = []
        self.cancel_at: str | None = None  # a child kind: cancel the demo run while it runs

    def kinds(self) -> dict[str, JobKind]:
        return {name: _stub_kind(name, getattr(self, name)) for name in ("refine", "score", "train", "evaluate")}

    def _step(self, kind: str, ctx) -> None:
        self.calls.append(kind)
        ctx.progress({"done": 1, "total": 2, "unit": "it", "message": f"{kind} halfway"})
        if self.cancel_at == kind:
            (ctx.parent.run_dir / "cancel").touch()  # what manager.cancel does to the demo run
        if ctx.should_stop():
            raise JobCancelled(f"{kind} stopped")
        ctx.progress({"done": 2, "total": 2, "unit": "it"})

    def refine(self, cfg, ctx):
        from dgr_core.data.store import DatasetStore

        self._step("refine", ctx)
        store = DatasetStore(ctx.ws)
        df = store.load(cfg["dataset"])
        refined = df.assign(parent_id=df["id"], id=df["id"] + "-r", fell_back=False)
        store.save(cfg["output_name"], refined, origin="stub", parent=cfg["dataset"])
        return {"output_dataset": cfg["output_name"], "n": len(df), "n_fell_back": 0, "fallback_rate": 0.0}

    def score(self, cfg, ctx):
        self._step("score", ctx)
        return {"dataset": cfg["dataset"], "mean": {"nll_total": 2.0 if cfg["dataset"].endswith("original") else 1.0}}

    def train(self, cfg, ctx):
        self._step("train", ctx)
        return {"base_model": cfg["model"], "model_ref": f"run:{ctx.run_dir.name}", "dataset": cfg["dataset"],
                "train": cfg["train"], "subset": cfg["subset"], "final_loss": 0.5}

    def evaluate(self, cfg, ctx):
        self._step("evaluate", ctx)
        value = 0.9 if cfg["model"]["ref"].startswith("run:") else 0.1
        return {"model": cfg["model"], "metrics": {
            "strongreject": {"kind": "harmful", "metric": "refusal_rate", "value": value, "ci": [0.0, 1.0], "n": 3}}}


@pytest.fixture
def stubs(monkeypatch):
    kinds.known_kinds()  # import the real kinds first, so they cannot re-register over the stubs later
    s = Stubs()
    for name, kind in s.kinds().items():
        monkeypatch.setitem(kinds._KINDS, name, kind)
    return s


def _demo_run(ws, cfg: DemoConfig):
    from dgr_core.data.demo import ensure_demo_datasets

    ensure_demo_datasets(ws)
    return manager.create_run(ws, "demo", cfg.to_dict(), name="demo")


def test_demo_runs_every_step_as_a_child_run_and_reports_them(ws, stubs):
    cfg = small_config(seeds=[0, 1])
    run_dir = _demo_run(ws, cfg)
    result = run_inline(JobContext(run_dir, ws))
    steps = plan_steps(cfg)
    assert stubs.calls == [s.kind for s in steps]
    children = [manager.get_run(ws, row["run_id"]) for row in read_steps(run_dir)]
    assert [c.kind for c in children] == [s.kind for s in steps]
    assert all(c.state == "done" and c.status.get("parent") == run_dir.name for c in children)
    # Progress: every child event reaches the demo run, tagged with its step, steps in order.
    events = manager.progress_events(run_dir)
    tagged = [e for e in events if "step" in e]
    assert {e["step"] for e in tagged} == set(range(1, len(steps) + 1))
    assert [e["step"] for e in tagged] == sorted(e["step"] for e in tagged)
    assert all(e["message"].startswith(f"step {e['step']}/{len(steps)}") for e in tagged)
    # Every SFT model is evaluated, the base model once.
    table = demo_table(result)
    assert sorted(table["model"].unique()) == ["base", "sft-original", "sft-refined"]
    assert len(table) == 1 + cfg.n_runs
    assert isinstance(result, DemoResult)
    assert result.shift["original"]["nll_total"] > result.shift["refined"]["nll_total"]
    assert list(step_table(ws, run_dir)["state"]) == ["done"] * len(steps)


def test_evaluations_use_the_trained_models(ws, stubs):
    run_dir = _demo_run(ws, small_config())
    result = run_inline(JobContext(run_dir, ws))
    for which in ("original", "refined"):
        label = f"sft-{which}-n2-s0"
        assert result.evaluations[label].model.ref == result.train[f"{which}-n2-s0"].model_ref
    assert result.evaluations["base"].model.ref == "stub"


def test_cancel_stops_the_child_and_resume_reuses_finished_steps(ws, stubs):
    cfg = small_config()
    run_dir = _demo_run(ws, cfg)
    stubs.cancel_at = "train"
    with pytest.raises(JobCancelled):
        run_inline(JobContext(run_dir, ws))
    table = step_table(ws, run_dir)
    first_train = table.index[table["kind"] == "train"][0]
    assert list(table["state"][:first_train]) == ["done"] * first_train
    assert table["state"][first_train] == "cancelled"
    assert set(table["state"][first_train + 1:]) == {"pending"}
    ids_before = list(table["run"][: first_train + 1])

    stubs.calls.clear()
    stubs.cancel_at = None
    run_inline(JobContext(run_dir, ws))  # resume: the same run folder again
    steps = plan_steps(cfg)
    assert stubs.calls == [s.kind for s in steps[first_train:]]  # finished children were not rerun
    after = step_table(ws, run_dir)
    assert list(after["run"][: first_train + 1]) == ids_before  # the cancelled child resumed in its own folder
    assert list(after["reused"][:first_train]) == [True] * first_train
    assert set(after["state"]) == {"done"}


def test_a_failing_child_fails_the_demo_with_its_error(ws, stubs, monkeypatch):
    def broken(cfg, ctx):
        raise RuntimeError("disk full")

    monkeypatch.setitem(kinds._KINDS, "score", _stub_kind("score", broken))
    run_dir = _demo_run(ws, small_config())
    with pytest.raises(RuntimeError, match="disk full"):
        run_inline(JobContext(run_dir, ws))
    table = step_table(ws, run_dir)
    failed = manager.get_run(ws, table["run"][1])
    assert failed.state == "failed" and "disk full" in failed.status["error"]


# ---------------------------------------------------------------- end to end: real kinds, fake backend


def test_demo_end_to_end_with_the_real_job_kinds(ws, tiny_model_dir, capsys):
    """`dgr demo` with the fake backend (refine, score, evaluate) and the tiny Llama (training)."""
    from dgr_core.cli import main
    from dgr_core.data.store import DatasetStore

    args = ["demo", "--model", str(tiny_model_dir), "--backend", "fake", "--n-refine", "4", "--budgets", "2",
            "--seeds", "0",
            "--epochs", "1", "--eval-max-new-tokens", "32", "--eval-limit", "arithmetic=3",
            "--eval-limit", "advbench50=3", "--eval-limit", "xstest=2"]
    assert main(args) == 0, capsys.readouterr().err
    demo = manager.list_runs(ws, "demo")[0]
    result = demo.result()
    assert demo.state == "done" and all(s.run_id for s in result.steps)
    # Strict JSON (a NaN mean, e.g. the reasoning NLL of a set without reasoning, must be written as null).
    json.loads((demo.run_dir / "result.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in result"))
    store = DatasetStore(ws)
    original, refined = (store.load(result.datasets[w]) for w in ("original", "refined"))
    assert store.info(result.datasets["refined"]).parent == result.datasets["original"]
    assert list(refined["parent_id"]) == list(original["id"])
    # Paired training rows: SFT-refined trains on the rewrites of exactly SFT-original's rows.
    train = result.train
    assert train["refined-n2-s0"].sample_ids == [f"{i}-r" for i in train["original-n2-s0"].sample_ids or []]
    # No training prompt is asked again in the safety evaluation.
    eval_dir = ws.runs / str(result.evaluations["base"].run_id)
    asked = {json.loads(line)["prompt"] for line in (eval_dir / "outputs.jsonl").read_text().splitlines()}
    assert asked and not asked & set(original["prompt"])
    table = demo_table(result)
    assert len(table) == 3 * 3 and table["value"].notna().any()
    _check_safety_tax_view(ws, result)

    # Resume: nothing is rerun, no new child runs appear.
    n_runs = len(manager.list_runs(ws))
    manager.resume(demo.run_dir)
    assert manager.wait(demo.run_dir, 120)["state"] == "done"
    assert len(manager.list_runs(ws)) == n_runs
    assert all(s.reused for s in demo.result().steps)


def _check_safety_tax_view(ws, result) -> None:
    """The Safety-tax page (and the report) read the demo's child runs: one original and one refined SFT run of
    the same source set, each with its shift (the score steps' cache), its metrics and the base model's."""
    from dgr_core.safety_tax import collect, results_table

    data = collect(ws, backend="fake")
    assert not data.unscored and not data.skipped
    by_variant = {r.variant: r for r in data.records}
    assert set(by_variant) == {"original", "refined"}
    original, refined = by_variant["original"], by_variant["refined"]
    assert original.dataset == result.datasets["original"] == original.source_dataset == refined.source_dataset
    assert original.run_id == result.train["original-n2-s0"].run_id
    for rec, which in ((original, "original"), (refined, "refined")):
        assert rec.shift["nll_total"] > 0 and set(rec.trained) == set(rec.base) == set(result.config["eval_limits"])
        metrics = result.evaluations[f"sft-{which}-n2-s0"].metrics
        assert rec.trained["advbench50"].value == metrics["advbench50"].value
    assert list(results_table(data)["method"]) == ["base model", "SFT", "SFT on refined"]


# ---------------------------------------------------------------- the panel (AppTest)

PANEL = """
from dgr_ui.common import workspace
from dgr_ui.demo_panel import demo_panel

demo_panel(workspace())
"""


def open_panel(monkeypatch, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(PANEL, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_panel_launches_the_demo_with_the_sidebar_model_and_its_settings(ws, monkeypatch):
    started = []
    monkeypatch.setattr(manager, "start", lambda run_dir: started.append(run_dir) or 0)  # no worker process
    at = open_panel(monkeypatch, backend="fake", target_model=ModelSpec("some/model", device="cpu"))
    assert not at.exception and any("No demo run yet" in i.value for i in at.info)
    at.number_input(key="demo_n_refine").set_value(6)
    at.multiselect(key="demo_budgets").set_value([2, 5, 10])  # 10 is more than refined: left out
    at.number_input(key="demo_seeds").set_value(3)
    at.number_input(key="demo_epochs").set_value(2).run()
    at.button(key="demo_launch").click().run()
    assert not at.exception
    (run,) = manager.list_runs(ws, "demo")
    assert started == [run.run_dir]
    cfg = DemoConfig.from_dict(run.spec["config"])
    assert (cfg.model.ref, cfg.model.device, cfg.backend) == ("some/model", "cpu", "fake")
    assert (cfg.n_refine, cfg.budgets, cfg.seeds, cfg.epochs) == (6, [2, 5], [0, 1, 2], 2)
    assert validate(cfg.to_dict()) == cfg
    assert any(run.run_dir.name in m.value for m in at.markdown), "the job panel does not show the launched run"


def test_panel_shows_the_steps_results_and_links_of_a_finished_demo(ws, stubs, monkeypatch):
    run_dir = _demo_run(ws, small_config(seeds=[0, 1]))
    result = run_inline(JobContext(run_dir, ws))
    at = open_panel(monkeypatch)
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    steps = next(f for f in frames if "what" in f.columns)
    assert list(steps["state"]) == ["done"] * len(plan_steps(small_config(seeds=[0, 1])))
    assert list(steps["run"]) == [row["run_id"] for row in read_steps(run_dir)]
    columns = ["base", "sft-original N=2", "sft-refined N=2"]
    pivot = next(f for f in frames if "sft-refined N=2" in f.columns)
    assert pivot[columns].to_numpy().tolist() == demo_pivot(result)[columns].to_numpy().tolist()
    captions = " ".join(c.value for c in at.caption)
    assert "0 of 4 rewrites fell back" in captions and "original 2.00, refined 1.00" in captions
    links = " ".join(m.value for m in at.markdown)
    assert "(/safety_tax)" in links and "(/report)" in links  # plain links: AppTest runs no router


def test_the_caveat_names_the_embedded_model_only():
    from dgr_core.pipeline import DEMO_CAVEAT, demo_caveat

    assert demo_caveat(["demo", "Qwen/Qwen3-8B"]) == DEMO_CAVEAT and "not the DGR paper's numbers" in DEMO_CAVEAT
    assert demo_caveat(["Qwen/Qwen3-8B"]) == "" and demo_caveat([]) == ""
