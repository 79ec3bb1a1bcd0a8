"""The `demo` job kind: run the plan step by step, reusing finished children, and summarise it (`DemoResult`).

    run = manager.submit(ws, "demo", DemoConfig().to_dict(), name="demo")

Resume: a step whose child run finished is reused (read back through its Result type); an unfinished one is run
again in its own folder, whose own resume logic keeps what it had finished. Memory is given back between children.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dgr_core.config import Config
from dgr_core.errors import JobCancelled, SpecError
from dgr_core.jobs.context import JobContext
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import DemoResult
from dgr_core.jobs.spec import load_spec
from dgr_core.pipeline.children import (
    ChildContext,
    child_result,
    init_steps,
    run_inline,
    step_event,
    update_step,
)
from dgr_core.pipeline.config import KIND, DemoConfig
from dgr_core.pipeline.plan import Step, child_config, dataset_names, plan_steps, prepare_original
from dgr_core.pipeline.tables import summarize
from dgr_core.workspace import Workspace


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
    rows = init_steps(ctx.run_dir, steps)
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
        update_step(ctx.run_dir, rows, step.key, reused=True)
        return result
    if child is None or not child.is_dir():
        name = f"{ctx.run_dir.name.rsplit('-', 1)[-1]} {step.key}"
        child = manager.create_run(ctx.ws, step.kind, child_config(step, cfg, names, results), name=f"demo-{name}")
        update_step(ctx.run_dir, rows, step.key, run_id=child.name)
    ctx.progress(step_event({"done": 0, "total": None, "message": "starting"}, number, total, step.label, child.name))
    t0 = time.perf_counter()
    try:
        result = run_inline(ChildContext(child, ctx.ws, ctx, number, total, step.label), parent=ctx.run_dir.name)
    finally:
        release_memory()
    update_step(ctx.run_dir, rows, step.key, seconds=round(time.perf_counter() - t0, 2), reused=False)
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


def latest_demo(ws: Workspace, state: str | None = "done"):
    """The newest demo run (in `state`, or any state when None), or None. Returns a manager.RunInfo."""
    from dgr_core.jobs import manager

    return next((r for r in manager.list_runs(ws, KIND) if state is None or r.state == state), None)


def describe(cfg: DemoConfig) -> str:
    return (f"DGR in miniature with {cfg.model.ref}: refine {cfg.n_refine}, SFT sweep N="
            f"{'/'.join(str(n) for n in cfg.budgets)} x {len(cfg.seeds)} seed(s) x 2 sets")


_KIND = register_kind(JobKind(KIND, DemoConfig, DemoResult, run, check=check, uses_model=True, describe=describe))


validate = _KIND.validate
