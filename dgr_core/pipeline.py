"""DGR in miniature: the whole experiment of the DGR paper, small enough for a laptop CPU, as one job.

    dgr demo                                   # the embedded defaults (SmolLM2-135M-Instruct, hf backend, CPU)
    dgr demo --budgets 5 10 20 --seeds 0 1 --lr 3e-4     # the defaults, spelled out

    from dgr_core.jobs import manager
    run = manager.submit(ws, "demo", DemoConfig().to_dict(), name="demo")

Steps (each one a normal child run folder of kind refine / score / train / evaluate, visible on the Runs page):
0. (inline, instant) draw `n_refine` samples of the DirectRefusal-style external set "demo-external-refusal",
   leaving out every prompt the safety evaluation will ask, and save them as the dataset `<tag>-original`;
1. refine them with the target model itself (mode joint, the demo's template: refuse in your own words and say
   why) into `<tag>-refined` (a rewrite needs no <think> block unless `expect_think`: the embedded model writes
   none, and its own words are the point);
2. score the original and the refined set (the distribution shift: NLL under the target model);
3. the sweep: per budget N and seed, LoRA SFT on N samples of each set (the same rows: the refined set keeps the
   original order, and the seeded draw picks the same positions, so sft-refined trains on the rewrites of
   sft-original's rows): 2 x 3 x 2 = 12 runs by default;
4. evaluate the base model and every SFT model with one evaluation config (same items, decoding, seed): 100
   level-1 arithmetic items, AdvBench-50 (harmful, never trained on), a seeded 50 of XSTest's safe prompts.

The children run in this process, one after another (memory is released between them), through `run_inline` (the worker's logic without the device
lock, which the demo job already holds). Progress: every child event is forwarded to the demo run with
"step i/k" in the message and the child's done/total. Cancel: a child stops when its own or the demo's cancel flag
is set. Resume: `steps.json` in the demo run folder maps each step to its child run; a finished child is reused,
an unfinished one is run again in its own folder (so its own resume logic keeps what it had finished).

result.json (`DemoResult`, dgr_core.jobs.results): datasets, refine summary, shift (mean NLLs), train summaries,
evaluations and a flat `table` of `DemoRow`s (`demo_table` turns it into a DataFrame for the panel and the
benchmark). Each child's result is read back through its kind's Result type (`child_result`), never as a dict.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd

from dgr_core.config import Config
from dgr_core.data.demo import DEMO_REFINE_TEMPLATE
from dgr_core.errors import DGRError, JobCancelled, SpecError
from dgr_core.jobs.context import JobContext
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import (
    DemoEvaluation,
    DemoRefine,
    DemoResult,
    DemoRow,
    DemoStep,
    DemoTrain,
    EvalResult,
    RefineResult,
    ScoreResult,
    TrainResult,
    read_result,
)
from dgr_core.jobs.spec import load_spec
from dgr_core.models.loading import ModelSpec
from dgr_core.workspace import Workspace, atomic_write_json, read_json

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Config)

KIND = "demo"
STEPS_FILE = "steps.json"
EXTERNAL_DATASET = "demo-external-refusal"
# Evaluation, identical for every model of a demo (items, decoding, seeds): 100 level-1 arithmetic items (the base
# model gets about half), AdvBench-50 (harmful; the training prompts come from StrongREJECT, minus any prompt asked
# here) and a seeded 50 of XSTest's 250 safe prompts (over-refusal; a subset for the 20-minute budget).
DEFAULT_EVAL_LIMITS = {"arithmetic": 100, "advbench50": 50, "xstest": 50}
DEFAULT_BUDGETS = (5, 10, 20)
# Calibrated on the external set (benchmarks/results_demo.md): see README "DGR in miniature".
DEFAULT_LR = 3e-4
DEFAULT_EPOCHS = 3
SETS = ("original", "refined")
# Progress fields a child reports that the demo run passes on unchanged.
FORWARDED = ("done", "total", "unit", "loss", "tokens_per_s", "eta_s", "padding")


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DemoConfig(Config):
    """One miniature DGR experiment: a sweep of 2 training sets x len(budgets) x len(seeds) LoRA runs, every run
    evaluated with identical settings. The defaults are sized for 2 CPU cores and about 20 minutes on the embedded
    model (measured: benchmarks/results_demo.md; the learning rate and epochs were calibrated there too)."""

    section: ClassVar[str] = "demo"

    model: ModelSpec = field(default_factory=ModelSpec)  # the target model: it refines, is trained, is evaluated
    backend: str = "hf"  # generation / scoring backend ("hf", "vllm", "fake"); training always uses transformers
    dataset: str = EXTERNAL_DATASET  # the external safety set whose samples are refined
    n_refine: int = 20  # samples drawn from it (seed `data_seed`) and refined: the largest budget
    budgets: list[int] = field(default_factory=lambda: list(DEFAULT_BUDGETS))  # SFT sizes N (samples per run)
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # one SFT run per seed, budget and set
    data_seed: int = 0  # which samples are drawn for refinement
    epochs: int = DEFAULT_EPOCHS  # SFT epochs (LoRA)
    learning_rate: float = DEFAULT_LR  # peak LR; lr 1e-3 x 3 made every arm refuse everything (issue #13)
    method: str = "lora"  # "lora" or "full"
    # The refine prompt (joint mode). The general default asks for a restatement, which a 135M model answers by
    # copying the refusal sentence; this one makes it write its own refusal with a reason (dgr_core.data.demo).
    refine_template: str = field(default_factory=lambda: DEMO_REFINE_TEMPLATE)
    refine_max_new_tokens: int = 96  # token limit of one rewrite (a rewrite cut there falls back)
    # Require a <think> block in each rewrite. Off by default: the embedded SmolLM2 never writes one, so every
    # rewrite would fall back to the original and the demo would compare a set with itself. Turn it on for a
    # reasoning model (a rewrite without reasoning then falls back instead of dropping the reasoning).
    expect_think: bool = False
    eval_max_new_tokens: int = 32  # token limit of one evaluation answer (level-1 arithmetic needs ~10)
    eval_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EVAL_LIMITS))  # items per benchmark
    arithmetic_levels: list[int] = field(default_factory=lambda: [1])  # the base model gets about half right
    eval_seed: int = 0  # which benchmark items are drawn (the same for every model: paired comparisons)
    # Prompts per generate call. Large on purpose: a 135M model on CPU spends most of a decoding step on overhead,
    # so 50 prompts per step cost little more than 16 (the safety sets are 50 items: one batch each).
    batch_size: int = 50

    @property
    def n_runs(self) -> int:
        """Trained runs in the sweep: 2 sets x budgets x seeds."""
        return 2 * len(self.budgets) * len(self.seeds)

    def validate(self) -> None:
        """SpecError naming the first bad field."""
        for name in ("n_refine", "epochs", "refine_max_new_tokens", "eval_max_new_tokens", "batch_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, "must be an integer >= 1")
        _require(_distinct_ints(self.budgets) and all(n >= 1 for n in self.budgets), "budgets",
                 "must be a non-empty list of distinct integers >= 1")
        _require(max(self.budgets) <= self.n_refine, "budgets",
                 f"({max(self.budgets)}) must not exceed n_refine ({self.n_refine})")
        _require(_distinct_ints(self.seeds), "seeds", "must be a non-empty list of distinct integers")
        _require(isinstance(self.learning_rate, int | float) and 0 < self.learning_rate < 1, "learning_rate",
                 "must be a number in (0, 1)")
        _require(self.method in ("lora", "full"), "method", "must be 'lora' or 'full'")
        _require(isinstance(self.eval_limits, dict) and bool(self.eval_limits), "eval_limits",
                 "must map at least one benchmark name to a number of items")
        for name, limit in self.eval_limits.items():
            _require(isinstance(limit, int) and limit >= 1, f"eval_limits.{name}", "must be an integer >= 1")


def _distinct_ints(values: Any) -> bool:
    return (isinstance(values, list) and bool(values) and all(isinstance(v, int) for v in values)
            and len(set(values)) == len(values))


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise SpecError(f"demo: {name} {problem}.")


# ---------------------------------------------------------------------------------------------------------------
# The plan: which child runs, with which configs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str  # stable name in steps.json, e.g. "train-refined-n10-s0"
    kind: str  # the child's job kind
    label: str  # what the UI shows


def arm_key(which: str, n: int, seed: int) -> str:
    """"refined", 10, 0 -> "refined-n10-s0": one trained run of the sweep."""
    return f"{which}-n{n}-s{seed}"


def parse_arm(key: str) -> tuple[str, int | None, int | None]:
    """"train-refined-n10-s0" / "sft-refined-n10-s0" -> ("refined", 10, 0); anything else -> (key, None, None)."""
    match = _ARM.search(key)
    if match is None:
        return key, None, None
    return match["which"], int(match["n"]), int(match["seed"])


_ARM = re.compile(r"(?P<which>original|refined)-n(?P<n>\d+)-s(?P<seed>\d+)$")


def arms(cfg: DemoConfig) -> list[tuple[str, int, int]]:
    """(set, budget, seed) of every trained run, small budgets first."""
    return [(which, n, seed) for n in cfg.budgets for seed in cfg.seeds for which in SETS]


def plan_steps(cfg: DemoConfig) -> list[Step]:
    """Every child run of the demo, in execution order: refine, score both sets, train every arm, evaluate the
    base model and every arm (all evaluations identical but for the model)."""
    steps = [Step("refine", "refine", "refine with the target model"),
             Step("score-original", "score", "score the original samples"),
             Step("score-refined", "score", "score the refined samples")]
    steps += [Step(f"train-{arm_key(w, n, s)}", "train", f"SFT on {w}, N={n} (seed {s})") for w, n, s in arms(cfg)]
    steps.append(Step("eval-base", "evaluate", "evaluate the base model"))
    steps += [Step(f"eval-sft-{arm_key(w, n, s)}", "evaluate", f"evaluate SFT-{w}, N={n} (seed {s})")
              for w, n, s in arms(cfg)]
    return steps


def dataset_names(tag: str) -> dict[str, str]:
    """The two datasets a demo run creates; `tag` is unique per demo run, so runs never overwrite each other."""
    return {"original": f"{tag}-original", "refined": f"{tag}-refined"}


def eval_config(cfg: DemoConfig, model: ModelSpec) -> dict[str, Any]:
    """The one evaluation of the demo: the same items, decoding and seed for the base model and every arm."""
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig

    sources = [BenchmarkSource(name, limit=limit) for name, limit in cfg.eval_limits.items()]
    gen = GenerationConfig(max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.batch_size, seed=cfg.eval_seed)
    return EvalConfig(model=model, backend=cfg.backend, benchmarks=sources, limit=0, seed=cfg.eval_seed,
                      arithmetic_levels=list(cfg.arithmetic_levels), generation=gen).to_dict()


def refine_config(cfg: DemoConfig, names: dict[str, str]) -> dict[str, Any]:
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.refine.filters import FilterConfig
    from dgr_core.refine.job import RefineConfig

    gen = GenerationConfig(max_new_tokens=cfg.refine_max_new_tokens, batch_size=cfg.batch_size)
    # score_after off: the demo scores both sets in steps of their own (visible, cached, resumable).
    return RefineConfig(dataset=names["original"], model=cfg.model, backend=cfg.backend, mode="joint",
                        template=cfg.refine_template, generation=gen,
                        filters=FilterConfig(expect_think=cfg.expect_think),
                        output_name=names["refined"], score_after=False).to_dict()


def score_config(cfg: DemoConfig, dataset: str) -> dict[str, Any]:
    from dgr_core.scoring.api import ScoreConfig
    from dgr_core.scoring.job import ScoreJobConfig

    return ScoreJobConfig(dataset, ScoreConfig(model=cfg.model, backend=cfg.backend)).to_dict()


def train_config(cfg: DemoConfig, dataset: str, n: int, seed: int) -> dict[str, Any]:
    from dgr_core.train.config import SubsetConfig, TrainConfig, TrainJobConfig

    # The same seed and n on two sets of the same length draw the same positions: paired training rows.
    return TrainJobConfig(dataset=dataset, model=cfg.model, backend=cfg.backend,
                          subset=SubsetConfig(strategy="random", n=n, seed=seed),
                          train=TrainConfig(method=cfg.method, epochs=cfg.epochs, seed=seed,
                                            learning_rate=float(cfg.learning_rate))).to_dict()


def child_config(step: Step, cfg: DemoConfig, names: dict[str, str], results: Mapping[str, Config]
                 ) -> dict[str, Any]:
    """The config of one child run; SFT models come from the results of their train steps."""
    if step.kind == "refine":
        return refine_config(cfg, names)
    if step.kind == "score":
        return score_config(cfg, names[step.key.removeprefix("score-")])
    if step.key == "eval-base":
        return eval_config(cfg, cfg.model)
    which, n, seed = parse_arm(step.key)
    if n is None or seed is None:
        raise DGRError(f"demo: step {step.key!r} names no training run.")
    if step.kind == "train":
        return train_config(cfg, names[which], n, seed)
    trained = step_result(results, f"train-{arm_key(which, n, seed)}", TrainResult)
    model = ModelSpec(trained.model_ref, device=cfg.model.device, dtype=cfg.model.dtype)
    return eval_config(cfg, model)


# ---------------------------------------------------------------------------------------------------------------
# Step 0: the samples to refine (inline)
# ---------------------------------------------------------------------------------------------------------------


def eval_prompts(cfg: DemoConfig, kind: str = "harmful") -> set[str]:
    """The prompts of one kind that the demo's evaluation asks (no model loads)."""
    from dgr_core.evaluate.runner import EvalConfig, load_items

    items = load_items(EvalConfig.from_dict(eval_config(cfg, cfg.model)))
    return set(items.loc[items["kind"] == kind, "prompt"].astype(str))


def draw_original(external: pd.DataFrame, cfg: DemoConfig, held_out: set[str]) -> pd.DataFrame:
    """`n_refine` seeded rows of the external set, none of whose prompts is in `held_out` (the evaluation's
    harmful prompts: training on them would measure memorised refusals, not activated ones)."""
    pool = external[~external["prompt"].astype(str).isin(held_out)]
    if len(pool) < cfg.n_refine:
        raise DGRError(f"demo: {cfg.dataset!r} has only {len(pool)} samples outside the evaluation set; "
                       f"lower n_refine ({cfg.n_refine}).")
    return pool.sample(n=cfg.n_refine, random_state=cfg.data_seed).reset_index(drop=True)


def prepare_original(ws: Workspace, cfg: DemoConfig, names: dict[str, str], run_name: str) -> None:
    """Save the drawn samples as the dataset names["original"] unless a resumed run already did."""
    from dgr_core.data.demo import ensure_demo_datasets
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    if store.exists(names["original"]):
        return
    if cfg.dataset == EXTERNAL_DATASET:
        ensure_demo_datasets(ws)
    df = draw_original(store.load(cfg.dataset), cfg, eval_prompts(cfg))
    # No `parent`: a dataset with a parent counts as *refined* (dgr_core.safety_tax), and this draw is the
    # original side of the comparison. Where it came from goes into `extra` instead.
    store.save(names["original"], df, origin=f"demo:{run_name}",
               description=f"{cfg.n_refine} samples of {cfg.dataset} (seed {cfg.data_seed}) drawn by demo run "
                           f"{run_name}, none of them in its safety evaluation.",
               extra={"drawn_from": cfg.dataset, "data_seed": cfg.data_seed, "demo_run": run_name})


# ---------------------------------------------------------------------------------------------------------------
# Running a child run in this process
# ---------------------------------------------------------------------------------------------------------------


class ChildContext(JobContext):
    """A JobContext on a child run folder that also reports to the parent and stops when the parent is cancelled."""

    def __init__(self, run_dir: Path, ws: Workspace, parent: JobContext, step_no: int, n_steps: int, label: str):
        super().__init__(run_dir, ws)
        self.parent, self.step_no, self.n_steps, self.label = parent, step_no, n_steps, label

    def progress(self, event: dict[str, Any]) -> None:
        super().progress(event)
        self.parent.progress(step_event(event, self.step_no, self.n_steps, self.label, self.run_dir.name))

    def should_stop(self) -> bool:
        return super().should_stop() or self.parent.should_stop()


def step_event(event: dict[str, Any], step_no: int, n_steps: int, label: str, child: str) -> dict[str, Any]:
    """The parent's view of a child event: the child's done/total, "step i/k · label · message"."""
    message = f"step {step_no}/{n_steps} · {label}" + (f" · {event['message']}" if event.get("message") else "")
    out = {k: event[k] for k in FORWARDED if k in event}
    return {**out, "step": step_no, "steps": n_steps, "step_label": label, "child": child, "message": message}


def run_inline(ctx: JobContext, parent: str = "") -> Config:
    """Run the child job in `ctx.run_dir` in this process through the worker's lifecycle (no device lock: the demo
    run holds it). Returns its result read back through the kind's Result type; a cancel or a failure propagates."""
    from dgr_core.jobs.worker import run_job_inline

    run_job_inline(ctx, parent)
    return child_result(ctx.run_dir)


def child_result(run_dir: Path) -> Config:
    """The typed result of a finished child run (DGRError when it has none: the step did not finish)."""
    result = read_result(run_dir)
    if result is None:
        raise DGRError(f"demo: child run {Path(run_dir).name} finished without a result.json.")
    return result


def step_result(results: Mapping[str, Config], key: str, expect: type[R]) -> R:
    """The result of step `key`, checked to be of the kind the demo expects there."""
    result = results[key]
    if not isinstance(result, expect):
        raise DGRError(f"demo: step {key!r} holds a {type(result).__name__}, not a {expect.__name__}.")
    return result


# ---------------------------------------------------------------------------------------------------------------
# steps.json: the demo run's map of steps to child runs
# ---------------------------------------------------------------------------------------------------------------


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / STEPS_FILE
    return read_json(path)["steps"] if path.is_file() else []


def _write_steps(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(Path(run_dir) / STEPS_FILE, {"steps": rows})


def _init_steps(run_dir: Path, steps: list[Step]) -> list[dict[str, Any]]:
    """steps.json with every planned step (kept: run ids and timings of a resumed run)."""
    old = {row["key"]: row for row in read_steps(run_dir)}
    rows = [{"key": s.key, "kind": s.kind, "label": s.label, "run_id": None, "seconds": None, "reused": False,
             **old.get(s.key, {})} for s in steps]
    _write_steps(run_dir, rows)
    return rows


def _update_step(run_dir: Path, rows: list[dict[str, Any]], key: str, **fields: Any) -> None:
    next(row for row in rows if row["key"] == key).update(fields)
    _write_steps(run_dir, rows)


def step_table(ws: Workspace, run_dir: Path) -> pd.DataFrame:
    """One row per step of a demo run: step, label, kind, state of its child run, seconds, run id (for the UI)."""
    from dgr_core.jobs import manager

    rows = []
    for i, row in enumerate(read_steps(run_dir), start=1):
        child = ws.runs / row["run_id"] if row.get("run_id") else None
        state = manager.status(child).get("state", "unknown") if child and child.is_dir() else "pending"
        rows.append({"step": i, "what": row["label"], "kind": row["kind"], "state": state,
                     "seconds": row.get("seconds"), "reused": bool(row.get("reused")), "run": row.get("run_id") or ""})
    return pd.DataFrame(rows, columns=["step", "what", "kind", "state", "seconds", "reused", "run"])


# ---------------------------------------------------------------------------------------------------------------
# The demo job
# ---------------------------------------------------------------------------------------------------------------


def check(cfg: DemoConfig) -> None:
    from dgr_core.backends.base import available_backends

    if cfg.backend not in available_backends():
        raise SpecError(f"demo: unknown backend {cfg.backend!r}; choose one of {available_backends()}.")


def run(cfg: DemoConfig, ctx: JobContext) -> DemoResult:
    started = time.perf_counter()
    tag = f"demo-{load_spec(ctx.run_dir).id}"
    names = dataset_names(tag)
    ctx.progress({"done": 0, "total": None, "message": "drawing the samples to refine"})
    prepare_original(ctx.ws, cfg, names, ctx.run_dir.name)
    steps = plan_steps(cfg)
    rows = _init_steps(ctx.run_dir, steps)
    results: dict[str, Config] = {}
    for number, step in enumerate(steps, start=1):
        if ctx.should_stop():
            raise JobCancelled(f"Cancelled before step {number}/{len(steps)} ({step.label}); resume to continue.")
        results[step.key] = _run_step(ctx, cfg, names, results, rows, step, number, len(steps))
    ctx.progress({"done": len(steps), "total": len(steps), "unit": "steps", "message": "done"})
    return summarize(cfg, names, results, rows, seconds=time.perf_counter() - started)


def _run_step(ctx: JobContext, cfg: DemoConfig, names: dict[str, str], results: Mapping[str, Config],
              rows: list[dict[str, Any]], step: Step, number: int, total: int) -> Config:
    """Reuse the step's finished child run, or create / re-run it here; records run id and wall time."""
    from dgr_core.jobs import manager

    row = next(r for r in rows if r["key"] == step.key)
    child = ctx.ws.runs / row["run_id"] if row.get("run_id") else None
    if child is not None and child.is_dir() and manager.status(child).get("state") == "done":
        result = child_result(child)
        _update_step(ctx.run_dir, rows, step.key, reused=True)
        return result
    if child is None or not child.is_dir():
        name = f"{ctx.run_dir.name.rsplit('-', 1)[-1]} {step.key}"
        child = manager.create_run(ctx.ws, step.kind, child_config(step, cfg, names, results), name=f"demo-{name}")
        _update_step(ctx.run_dir, rows, step.key, run_id=child.name)
    ctx.progress(step_event({"done": 0, "total": None, "message": "starting"}, number, total, step.label, child.name))
    t0 = time.perf_counter()
    try:
        result = run_inline(ChildContext(child, ctx.ws, ctx, number, total, step.label), parent=ctx.run_dir.name)
    finally:
        release_memory()
    _update_step(ctx.run_dir, rows, step.key, seconds=round(time.perf_counter() - t0, 2), reused=False)
    return result


def release_memory() -> None:
    """Give back what a finished child held before the next one loads its model. The children run in this one
    process, and a 25-step sweep that never returns memory to the OS grew to 4.6 GB and was OOM-killed on a shared
    24 GB box (benchmarks/results_demo.md): collect the cycles, then ask glibc to return its free heap."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


# ---------------------------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------------------------


def summarize(cfg: DemoConfig, names: dict[str, str], results: Mapping[str, Config], rows: list[dict[str, Any]],
              seconds: float) -> DemoResult:
    refine = step_result(results, "refine", RefineResult)
    evaluations = {key.removeprefix("eval-"): _evaluation(step_result(results, key, EvalResult), _run_id(rows, key))
                   for key in results if key.startswith("eval-")}
    return DemoResult(
        config=cfg.to_dict(), datasets=names,
        refine=DemoRefine(refine.output_dataset, refine.n, refine.n_fell_back, refine.fallback_rate,
                          refine.fallback_reasons, refine.seconds),
        shift={which: {k: _finite(v) for k, v in step_result(results, f"score-{which}", ScoreResult).mean.items()}
               for which in ("original", "refined")},
        train={key.removeprefix("train-"): _train_summary(step_result(results, key, TrainResult), _run_id(rows, key))
               for key in results if key.startswith("train-")},
        evaluations=evaluations, table=metric_rows(evaluations),
        steps=[DemoStep(r["key"], r["kind"], r.get("run_id"), r.get("seconds"), r.get("reused")) for r in rows],
        seconds=round(seconds, 2))


def _finite(value: Any) -> float | None:
    # A mean over no tokens (a refined set without reasoning has no reasoning NLL) is NaN: null in strict JSON.
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _run_id(rows: list[dict[str, Any]], key: str) -> str | None:
    return next((r.get("run_id") for r in rows if r["key"] == key), None)


def _evaluation(res: EvalResult, run_id: str | None) -> DemoEvaluation:
    return DemoEvaluation(run_id=run_id, model=res.model, metrics=res.metrics)


def _train_summary(res: TrainResult, run_id: str | None) -> DemoTrain:
    return DemoTrain(run_id=run_id, model_ref=res.model_ref, dataset=res.dataset, n_samples=res.n_samples,
                     sample_ids=res.sample_ids, steps=res.steps, first_loss=res.first_loss,
                     final_loss=res.final_loss, seconds=res.seconds)


def split_label(label: str) -> tuple[str, int | None, int | None]:
    """"sft-refined-n10-s0" -> ("sft-refined", 10, 0); "base" -> ("base", None, None)."""
    which, n, seed = parse_arm(label)
    if n is None or seed is None:
        return label, None, None
    return label[: -len(arm_key(which, n, seed))] + which, n, seed


def metric_rows(evaluations: Mapping[str, DemoEvaluation]) -> list[DemoRow]:
    """One row per (model, N, seed, benchmark): the flat table the panel, the benchmark and the report read."""
    rows = []
    for label, ev in evaluations.items():
        model, n, seed = split_label(label)
        for bench, m in ev.metrics.items():
            lo, hi = m.ci if m.ci is not None else (None, None)
            rows.append(DemoRow(model=model, n_train=n, seed=seed, benchmark=bench, kind=m.kind, metric=m.metric,
                                value=m.value, ci_lo=lo, ci_hi=hi, n=m.n, run_id=ev.run_id))
    return rows


TABLE_COLUMNS = [f.name for f in fields(DemoRow)]


def demo_table(result: DemoResult) -> pd.DataFrame:
    """The demo's metrics as a DataFrame: model (base / sft-original / sft-refined), n_train (the budget N),
    seed, benchmark, kind, metric, value, ci_lo, ci_hi (Wilson 95%), n, run_id."""
    return pd.DataFrame([row.to_dict() for row in result.table], columns=TABLE_COLUMNS).astype(
        {"n_train": "Int64", "seed": "Int64"})


def demo_pivot(result: DemoResult) -> pd.DataFrame:
    """benchmark, metric, then one column per model and budget ("base", "sft-original N=5", …): the value in
    percent, averaged over seeds. The compact view of a demo run."""
    table = demo_table(result)
    if table.empty:
        return pd.DataFrame(columns=["benchmark", "metric"])
    table = table.assign(column=[m if pd.isna(n) else f"{m} N={n}" for m, n in zip(table["model"], table["n_train"],
                                                                                   strict=True)],
                         percent=100 * pd.to_numeric(table["value"], errors="coerce"))
    # groupby, not pivot_table: only the (benchmark, metric) pairs that exist, and a model whose value is missing
    # keeps its NaN cell instead of vanishing.
    wide = (table.groupby(["benchmark", "metric", "column"], sort=False, dropna=False)["percent"].mean()
            .unstack("column"))
    order = sorted(wide.columns, key=_column_order)
    return wide[order].reset_index().rename_axis(columns=None)


def _column_order(column: str) -> tuple[int, int]:
    model, _, n = column.partition(" N=")
    rank = {"base": 0, "sft-original": 1, "sft-refined": 2}.get(model, 3)
    return rank, int(n) if n.isdigit() else 0


DEMO_CAVEAT = ("Trained from the embedded SmolLM2-135M-Instruct: a 135M model that writes no reasoning, so these "
               "runs show the method's mechanics (shift, SFT, evaluation, the fit), not the DGR paper's numbers.")


def demo_caveat(base_models: Iterable[str]) -> str:
    """DEMO_CAVEAT when one of the base models is the embedded demo model, else ""."""
    from dgr_core.models.loading import DEMO_ALIASES

    return DEMO_CAVEAT if any(str(ref) in DEMO_ALIASES for ref in base_models) else ""


def latest_demo(ws: Workspace, state: str | None = "done"):
    """The newest demo run (in `state`, or any state when None), or None. Returns a manager.RunInfo."""
    from dgr_core.jobs import manager

    return next((r for r in manager.list_runs(ws, KIND) if state is None or r.state == state), None)


def describe(cfg: DemoConfig) -> str:
    return (f"DGR in miniature with {cfg.model.ref}: refine {cfg.n_refine}, SFT sweep N="
            f"{'/'.join(str(n) for n in cfg.budgets)} x {len(cfg.seeds)} seed(s) x 2 sets")


_KIND = register_kind(JobKind(KIND, DemoConfig, DemoResult, run, check=check, uses_model=True, describe=describe))
validate = _KIND.validate


# ---------------------------------------------------------------------------------------------------------------
# CLI: `dgr demo`
# ---------------------------------------------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    from dgr_core.cli import backend_of
    model = ModelSpec(args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)
    limits = dict(DEFAULT_EVAL_LIMITS)
    for item in args.eval_limit or []:
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise DGRError(f"--eval-limit takes BENCHMARK=N (e.g. xstest=50), not {item!r}.")
        limits[name] = int(value)
    return DemoConfig(model=model, backend=backend_of(args), n_refine=args.n_refine, budgets=list(args.budgets),
                      seeds=list(args.seeds), epochs=args.epochs, learning_rate=args.lr,
                      refine_max_new_tokens=args.refine_max_new_tokens,
                      eval_max_new_tokens=args.eval_max_new_tokens, eval_limits=limits,
                      arithmetic_levels=list(args.levels), expect_think=args.expect_think,
                      batch_size=args.batch_size)


def cmd_demo(args: argparse.Namespace) -> int:
    from dgr_core.cli import follow
    from dgr_core.jobs import manager

    cfg = config_from_args(args)
    run_dir = manager.submit(Workspace.default(), KIND, cfg.to_dict(), name="demo")
    return follow(run_dir)


def register(subparsers) -> None:
    from dgr_core.cli import add_model_args

    d = DemoConfig()
    p = subparsers.add_parser("demo", help="DGR in miniature: refine, score, an SFT sweep and its evaluation")
    add_model_args(p)
    p.add_argument("--n-refine", type=int, default=d.n_refine, help="samples of the external set to refine")
    p.add_argument("--budgets", type=int, nargs="+", default=d.budgets,
                   help="SFT sizes N: one run per N, seed and set (each at most --n-refine)")
    p.add_argument("--seeds", type=int, nargs="+", default=d.seeds, help="one SFT run per seed, budget and set")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate of the SFT runs")
    p.add_argument("--refine-max-new-tokens", type=int, default=d.refine_max_new_tokens)
    p.add_argument("--eval-max-new-tokens", type=int, default=d.eval_max_new_tokens)
    p.add_argument("--levels", type=int, nargs="+", default=d.arithmetic_levels, help="arithmetic levels (1-5)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per generation batch")
    p.add_argument("--expect-think", action="store_true",
                   help="require a <think> block in every rewrite (for reasoning models; the demo model has none)")
    p.add_argument("--eval-limit", action="append", metavar="BENCHMARK=N",
                   help=f"items per benchmark (repeatable); defaults {DEFAULT_EVAL_LIMITS}")
    p.set_defaults(fn=cmd_demo)
