"""Before / after: evaluate the base model and the model a train run saved with the same settings, and put the
two results side by side (the 10-sample refusal activation: refusal rate up, reasoning accuracy kept?).

    from dgr_core.train.compare import before_after, launch_before_after
    settings = EvalConfig(benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")], limit=10)
    pair = launch_before_after(ws, train_run_dir, settings)   # {"before": run dir, "after": run dir}
    table = before_after(ws, train_run_dir)                     # benchmark, metric, before, after, delta, better

Nothing links the evaluate runs to the train run but their own job.json: "after" is an evaluate run of model
`run:<train run id>`, "before" an evaluate run of the train run's base model whose every other setting is equal.
So a pair is found again from the files alone (the page, the CLI and a notebook agree), and an evaluation that
already exists with identical settings (e.g. of the base model, shared by several train runs) is reused rather
than run again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from dgr_core.errors import DGRError
from dgr_core.evaluate.runner import EvalConfig
from dgr_core.jobs import manager
from dgr_core.jobs.results import EvalResult
from dgr_core.models.loading import RUN_PREFIX, ModelSpec
from dgr_core.train.config import TrainJobConfig
from dgr_core.workspace import Workspace

ACTIVE = ("queued", "waiting", "running")
COLUMNS = ["benchmark", "kind", "metric", "before", "after", "delta", "better", "ci_before", "ci_after",
           "n_before", "n_after", "truncation_before", "truncation_after", "comparable", "why_not"]


def _train_run(ws: Workspace, train_run: Path | str) -> manager.RunInfo:
    info = manager.get_run(ws, Path(train_run).name)
    if info.kind != "train":
        raise DGRError(f"run {info.id} is a {info.kind} run, not a train run.")
    return info


def base_spec(info: manager.RunInfo) -> ModelSpec:
    """The model a train run started from (its job.json, read through TrainJobConfig)."""
    return info.config_as(TrainJobConfig).model


def trained_spec(info: manager.RunInfo) -> ModelSpec:
    """The trained model: `run:<id>`, loaded on the base model's device and dtype."""
    return replace(base_spec(info), ref=f"{RUN_PREFIX}{info.id}")


def pair_configs(info: manager.RunInfo, settings: EvalConfig) -> dict[str, EvalConfig]:
    """The two evaluate configs: `settings` with the base model ("before") and the trained one ("after")."""
    return {"before": replace(settings, model=base_spec(info)), "after": replace(settings, model=trained_spec(info))}


def _eval_config(info: manager.RunInfo) -> EvalConfig | None:
    """An evaluate run's typed config; None when its job.json does not fit EvalConfig (an old or foreign run)."""
    try:
        return info.config_as(EvalConfig)
    except DGRError:
        return None


def _same(info: manager.RunInfo, cfg: EvalConfig) -> bool:
    theirs = _eval_config(info)
    return theirs is not None and theirs.to_dict() == cfg.to_dict()


def find_eval(ws: Workspace, cfg: EvalConfig, states: tuple[str, ...] = ("done",)) -> manager.RunInfo | None:
    """The newest evaluate run with exactly these settings in one of `states` (None if there is none)."""
    for info in manager.list_runs(ws, "evaluate"):
        if info.state in states and _same(info, cfg):
            return info
    return None


def launch_before_after(ws: Workspace, train_run: Path | str, settings: EvalConfig) -> dict[str, Path]:
    """Submit the before and after evaluations of a finished train run; an identical evaluation that is done or
    under way is reused. The two jobs run one after the other (one model job at a time)."""
    info = _train_run(ws, train_run)
    if info.state != "done":
        raise DGRError(f"train run {info.id} is {info.state}: only a finished run has a trained model to evaluate.")
    out = {}
    for side, cfg in pair_configs(info, settings).items():
        existing = find_eval(ws, cfg, ("done", *ACTIVE))
        out[side] = existing.run_dir if existing else manager.submit(
            ws, "evaluate", cfg.to_dict(), name=f"eval-{side}-{info.id[-8:]}")
    return out


def latest_after(ws: Workspace, info: manager.RunInfo) -> manager.RunInfo | None:
    """The newest evaluate run of the trained model (any state)."""
    ref = f"{RUN_PREFIX}{info.id}"
    for run in manager.list_runs(ws, "evaluate"):
        cfg = _eval_config(run)
        if cfg is not None and cfg.model.ref == ref:
            return run
    return None


def eval_pair(ws: Workspace, train_run: Path | str) -> dict[str, manager.RunInfo | None]:
    """The newest evaluation of the trained model and the base-model evaluation with the same settings (either
    may be None, or still running)."""
    info = _train_run(ws, train_run)
    after = latest_after(ws, info)
    if after is None:
        return {"before": None, "after": None}
    settings = after.config_as(EvalConfig)
    before = pair_configs(info, settings)["before"]
    return {"before": find_eval(ws, before, ("done", *ACTIVE)), "after": after}


def before_after(ws: Workspace, train_run: Path | str) -> pd.DataFrame:
    """Metrics of the base and the trained model side by side (COLUMNS; delta = after - before; `better` names
    the better side, knowing that a higher over-refusal rate is worse; `comparable` / `why_not` say whether the
    two are like for like: same items, decoding, budget, judge and seeds). Empty until both evaluations are done;
    `table.attrs` names the two evaluate runs. ResultError when either result.json cannot be read back."""
    from dgr_core import runs

    pair = eval_pair(ws, train_run)
    before, after = pair["before"], pair["after"]
    if before is None or after is None or before.state != "done" or after.state != "done":
        return pd.DataFrame(columns=COLUMNS)
    table = runs.metric_deltas(before.result_as(EvalResult), after.result_as(EvalResult))
    table = table.rename(columns={"value_a": "before", "value_b": "after", "ci_a": "ci_before", "ci_b": "ci_after",
                                  "n_a": "n_before", "n_b": "n_after", "truncation_a": "truncation_before",
                                  "truncation_b": "truncation_after"})
    table["better"] = table["better"].map({"a": "before", "b": "after", "=": "=", "": ""})
    table.attrs.update(before=before.id, after=after.id)
    return table[COLUMNS]
