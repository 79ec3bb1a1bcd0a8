"""The demo's plan: which child runs (`plan_steps`), the config of each (`child_config`), and step 0, the draw of
the samples to refine (`prepare_original`: seeded, never a prompt the safety evaluation asks).

    steps = plan_steps(cfg)          # refine, score x 2, train per (set, N, seed), evaluate base + every arm
    child_config(step, cfg, names, results)    # an SFT model's evaluation takes the model from its train result
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dgr_core.config import Config
from dgr_core.errors import DGRError
from dgr_core.jobs.results import TrainResult
from dgr_core.models.loading import ModelSpec
from dgr_core.pipeline.children import step_result
from dgr_core.pipeline.config import EXTERNAL_DATASET, SETS, DemoConfig
from dgr_core.workspace import Workspace


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
