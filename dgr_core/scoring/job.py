"""The `score` job kind: score one dataset (cache first) and record a summary in result.json."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dgr_core.errors import SpecError
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.scoring.api import ScoreConfig, score_dataset

MODES = ("chat", "raw")


def validate(config: dict[str, Any]) -> tuple[str, ScoreConfig]:
    dataset = config.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise SpecError("score: 'dataset' must be the name of a dataset in the workspace.")
    settings = config.get("score", {})
    unknown = sorted(set(settings) - set(ScoreConfig.__dataclass_fields__)) if isinstance(settings, dict) else []
    if unknown:  # a typo must not silently fall back to a default
        raise SpecError(f"score: bad 'score' settings (unknown field(s) {', '.join(unknown)}).")
    try:
        cfg = ScoreConfig.from_dict(settings)
    except TypeError as exc:
        raise SpecError(f"score: bad 'score' settings ({exc}).") from exc
    from dgr_core.backends.base import available_backends

    if cfg.backend not in available_backends():
        raise SpecError(f"score: unknown backend {cfg.backend!r}; choose one of {available_backends()}.")
    if cfg.mode not in MODES:
        raise SpecError(f"score: mode must be one of {MODES}, not {cfg.mode!r}.")
    if cfg.max_length < 8 or cfg.chunk_size < 1 or cfg.token_budget < 0:
        raise SpecError("score: max_length >= 8, chunk_size >= 1 and token_budget >= 0 are required.")
    return dataset, cfg


def run(config: tuple[str, ScoreConfig], ctx) -> dict[str, Any]:
    dataset, cfg = config
    from dgr_core.data.store import DatasetStore

    DatasetStore(ctx.ws).info(dataset)  # fails fast, naming the dataset, before the model loads
    ctx.progress({"done": 0, "total": None, "message": "loading model"})
    result = score_dataset(ctx.ws, dataset, cfg, progress=ctx.progress, should_stop=ctx.should_stop)
    t = result.table
    # A set without reasoning has no reasoning NLL: null, not NaN (result.json stays strict JSON).
    summary = {c: (None if pd.isna(m := t[c].mean()) else float(m))
               for c in ("nll_reasoning", "nll_answer", "nll_total") if c in t}
    ctx.progress({"done": len(t), "total": len(t), "message": "done"})
    return {"dataset": dataset, "op_key": result.store.key, "n": len(t), "computed": result.computed,
            "cache_hits": len(t) - result.computed, "mean": summary,
            "tokens": int(t["n_tokens_total"].sum())}


register_kind(JobKind("score", validate, run, uses_model=True,
                      describe=lambda c: f"score {c.get('dataset')} with {c.get('score', {}).get('model', {}).get('ref', 'demo')}"))
