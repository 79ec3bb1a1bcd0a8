"""The `score` job kind: score one dataset (cache first) and record a summary in result.json.

    manager.submit(ws, "score", ScoreJobConfig("star1", ScoreConfig(model=ModelSpec("demo"))).to_dict())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd

from dgr_core.config import Config, require
from dgr_core.errors import SpecError
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import ScoreResult
from dgr_core.scoring.api import ScoreConfig, score_dataset

MODES = ("chat", "raw")


@dataclass
class ScoreJobConfig(Config):
    """What a `score` job does: one dataset, one ScoreConfig."""

    section: ClassVar[str] = "score"

    dataset: str  # the name of a dataset in the workspace
    score: ScoreConfig = field(default_factory=ScoreConfig)  # how to score (model, backend, settings)

    def validate(self) -> None:
        cfg = self.score
        require(bool(self.dataset), "config.dataset", "must be the name of a dataset in the workspace")
        require(cfg.mode in MODES, "config.score.mode", f"must be one of {MODES}, not {cfg.mode!r}")
        require(cfg.max_length >= 8 and cfg.chunk_size >= 1 and cfg.token_budget >= 0, "config.score",
                "needs max_length >= 8, chunk_size >= 1 and token_budget >= 0")


def check_backend(cfg: ScoreJobConfig) -> None:
    from dgr_core.backends.base import available_backends

    if cfg.score.backend not in available_backends():
        raise SpecError(f"score: unknown backend {cfg.score.backend!r}; choose one of {available_backends()}.")


def run(cfg: ScoreJobConfig, ctx) -> ScoreResult:
    from dgr_core.data.store import DatasetStore

    DatasetStore(ctx.ws).info(cfg.dataset)  # fails fast, naming the dataset, before the model loads
    ctx.progress({"done": 0, "total": None, "message": "loading model"})
    result = score_dataset(ctx.ws, cfg.dataset, cfg.score, progress=ctx.progress, should_stop=ctx.should_stop)
    t = result.table
    # A set without reasoning has no reasoning NLL: null, not NaN (result.json stays strict JSON).
    summary = {c: (None if pd.isna(m := t[c].mean()) else float(m))
               for c in ("nll_reasoning", "nll_answer", "nll_total") if c in t}
    ctx.progress({"done": len(t), "total": len(t), "message": "done"})
    return ScoreResult(dataset=cfg.dataset, op_key=result.store.key, n=len(t), computed=result.computed,
                       cache_hits=len(t) - result.computed, mean=summary, tokens=int(t["n_tokens_total"].sum()))


def describe(cfg: ScoreJobConfig) -> str:
    return f"score {cfg.dataset} with {cfg.score.model.ref} ({cfg.score.backend})"


KIND = register_kind(JobKind("score", ScoreJobConfig, ScoreResult, run, check=check_backend, uses_model=True,
                             describe=describe))
validate = KIND.validate
