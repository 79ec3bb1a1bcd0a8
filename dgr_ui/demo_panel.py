"""The "DGR in miniature" panel: one click submits the demo job (dgr_core.pipeline) with the sidebar's model and
backend, then shows its live job panel, the list of its steps (each a child run) and, when done, the metrics of
the base model, SFT on the original samples and SFT on the refined samples.

    from dgr_ui.demo_panel import demo_panel
    demo_panel(workspace())
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dgr_core.jobs import manager
from dgr_core.pipeline import KIND, DemoConfig, demo_pivot, latest_demo, step_table
from dgr_core.workspace import Workspace
from dgr_ui.common import current_backend, current_model
from dgr_ui.jobs import job_panel, launch, tracked

ACTIVE = ("queued", "waiting", "running")


def demo_panel(ws: Workspace, key: str = "demo") -> None:
    """Button, job panel, step list and results of the newest demo run (the one launched here, else the last)."""
    st.subheader("DGR in miniature")
    cfg = DemoConfig(model=current_model(), backend=current_backend())
    st.caption(f"Refines {cfg.n_refine} samples of `{cfg.dataset}` with `{cfg.model.ref}` ({cfg.backend}), scores "
               f"both sets, fine-tunes ({cfg.method.upper()}, {cfg.epochs} epochs) on {cfg.n_train} original and "
               f"{cfg.n_train} refined samples, and evaluates the base and both SFT models on "
               f"{', '.join(cfg.eval_limits)}. About 10 minutes on a 2-core CPU (benchmarks/RESULTS.md). "
               "Same as `dgr demo` on the command line.")
    if st.button("Run DGR in miniature", key=f"{key}_launch", type="primary"):
        launch(ws, KIND, cfg.to_dict(), name="demo", key=key)
    run_dir = tracked(key) or _newest(ws)
    if run_dir is None:
        st.info("No demo run yet.")
        return
    job_panel(run_dir, key)
    _steps(ws, run_dir, key)
    _results(run_dir)


def _newest(ws: Workspace) -> Path | None:
    info = latest_demo(ws, state=None)
    return info.run_dir if info else None


def _steps(ws: Workspace, run_dir: Path, key: str) -> None:
    def render() -> None:
        table = step_table(ws, run_dir)
        if table.empty:
            st.caption("Preparing the steps…")
        else:
            st.dataframe(table, hide_index=True, width="stretch", key=f"{key}_steps_{len(table)}",
                         column_config={"seconds": st.column_config.NumberColumn(format="%.0f s")})

    if manager.status(run_dir).get("state") in ACTIVE:
        st.fragment(run_every=2.0)(render)()
    else:
        render()


def _results(run_dir: Path) -> None:
    result = manager.RunInfo(run_dir, {}, {}).result()
    if not result:
        return
    st.markdown("**Results** (mean over seeds; refusal on held-out harmful prompts, over-refusal on benign ones)")
    st.dataframe(demo_pivot(result), hide_index=True, width="stretch")
    refine = result.get("refine") or {}
    if refine.get("n"):
        st.caption(f"{refine.get('n_fell_back', 0)} of {refine['n']} rewrites fell back to the original "
                   f"({refine.get('fallback_rate', 0):.0%}).")
