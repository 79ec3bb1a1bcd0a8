"""The `evaluate` job kind: generate and grade one model on reasoning and safety benchmarks.

Config = `EvalConfig.to_dict()` (see dgr_core.evaluate.runner). The run folder gets `outputs.jsonl` (one graded
record per sample, appended per batch: a resumed run skips what is there) and `result.json` with the metrics.

    from dgr_core.jobs import manager
    run = manager.submit(ws, "evaluate", EvalConfig(limit=5).to_dict(), name="eval-demo")
"""

from __future__ import annotations

from typing import Any

from dgr_core.errors import SpecError
from dgr_core.evaluate.runner import EvalConfig, model_label, run_evaluation
from dgr_core.evaluate.signature import decoding_label
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import EvalResult


def check(cfg: EvalConfig) -> None:
    """After the typed config's checks: the backend exists (before any model or data loads)."""
    from dgr_core.backends.base import available_backends

    if cfg.backend not in available_backends():
        raise SpecError(f"evaluate: unknown backend {cfg.backend!r}; choose one of {available_backends()}.")


def run(cfg: EvalConfig, ctx) -> dict[str, Any]:
    return run_evaluation(cfg, ctx.ws, ctx.run_dir, progress=ctx.progress, should_stop=ctx.should_stop)


def describe(cfg: EvalConfig) -> str:
    decoding = decoding_label(cfg.generation.temperature, cfg.generation.top_p)
    k = f" k={cfg.samples}" if cfg.samples > 1 else ""
    return (f"evaluate {model_label(cfg.model, cfg.backend)} on {', '.join(b.name for b in cfg.benchmarks)} "
            f"({decoding}{k}, {cfg.generation.max_new_tokens} tokens)")


_KIND = register_kind(JobKind("evaluate", EvalConfig, EvalResult, run, check=check, uses_model=True,
                             describe=describe))
validate = _KIND.validate
