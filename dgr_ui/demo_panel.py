"""The "DGR in miniature" panel: one click submits the demo job (dgr_core.pipeline) with the sidebar's model and
backend, then shows its live job panel (step i/k and the running child's progress, ETA, cancel / resume), the
list of its steps (each a child run) and, when done, the metrics of the base model, SFT on the original samples
and SFT on the refined samples, with links to the Safety-tax page and the report, which read the same runs.

    from dgr_ui.demo_panel import demo_panel
    demo_panel(workspace())

Not nested in an expander of its own: the Datasets page already shows it inside one (Streamlit forbids nesting).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from dgr_core.errors import DGRError
from dgr_core.jobs import manager
from dgr_core.jobs.results import DemoResult
from dgr_core.pipeline import KIND, DemoConfig, demo_pivot, latest_demo, step_table
from dgr_core.workspace import Workspace
from dgr_ui.common import current_backend, current_model, show_error
from dgr_ui.jobs import job_panel, launch, tracked

ACTIVE = ("queued", "waiting", "running")
# (script relative to app.py, label, url path as app.py names it): where the demo's results are read.
RESULT_PAGES = (("views/safety_tax.py", "Safety tax", "safety_tax"), ("views/report.py", "Report", "report"))


def demo_panel(ws: Workspace, key: str = "demo") -> None:
    """Settings, button, job panel, step list and results of the newest demo run (launched here, else the last)."""
    st.subheader("DGR in miniature")
    cfg = settings(key)
    st.caption(describe(cfg) + " Target on the embedded model: under 20 minutes on 2 CPU cores (measured times: "
               "benchmarks/results_demo.md). Same as `dgr demo` on the command line.")
    if st.button("Run DGR in miniature", key=f"{key}_launch", type="primary"):
        launch(ws, KIND, cfg.to_dict(), name="demo", key=key)
    run_dir = tracked(key) or _newest(ws)
    if run_dir is None:
        st.info("No demo run yet.")
        return
    job_panel(run_dir, key)
    _steps(ws, run_dir, key)
    _results(run_dir)


BUDGET_CHOICES = [2, 5, 10, 20, 40, 80]
LR_CHOICES = [1e-4, 2e-4, 3e-4, 5e-4, 1e-3]


def settings(key: str) -> DemoConfig:
    """The demo config: the sidebar's model and backend; samples, budgets, seeds, epochs and learning rate."""
    d = DemoConfig()
    cols = st.columns(5)
    n_refine = cols[0].number_input("Samples refined", 1, 313, d.n_refine, key=f"{key}_n_refine",
                                    help=f"Drawn (seeded) from `{d.dataset}`, none of them asked in the evaluation.")
    budgets = cols[1].multiselect("SFT budgets N", BUDGET_CHOICES, d.budgets, key=f"{key}_budgets",
                                  help="One SFT run per N, seed and set; an N above the samples refined is left "
                                       "out. The DGR paper: as few as 10 samples activate refusals.")
    n_seeds = cols[2].number_input("Seeds", 1, 5, len(d.seeds), key=f"{key}_seeds")
    epochs = cols[3].number_input("SFT epochs", 1, 20, d.epochs, key=f"{key}_epochs")
    lr = cols[4].selectbox("Learning rate", LR_CHOICES, LR_CHOICES.index(d.learning_rate), key=f"{key}_lr",
                           format_func=lambda v: f"{v:.0e}", help="LoRA peak learning rate (calibration: README).")
    kept = sorted(n for n in budgets if n <= int(n_refine)) or [int(n_refine)]
    return DemoConfig(model=current_model(), backend=current_backend(), n_refine=int(n_refine), budgets=kept,
                      seeds=list(range(int(n_seeds))), epochs=int(epochs), learning_rate=float(lr))


def describe(cfg: DemoConfig) -> str:
    return (f"Refines {cfg.n_refine} samples of `{cfg.dataset}` with `{cfg.model.ref}` ({cfg.backend}) in its own "
            f"words, scores both sets (NLL under the model: the x axis of the Safety-tax page), fine-tunes "
            f"{cfg.n_runs} {cfg.method.upper()} runs ({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}, lr "
            f"{cfg.learning_rate:g}): original and refined × N = {', '.join(map(str, cfg.budgets))} × "
            f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) != 1 else ''}, and evaluates the base model and every run "
            f"with identical settings on {', '.join(f'{b} ({n})' for b, n in cfg.eval_limits.items())}. A 135M "
            "model without reasoning shows the method's mechanics, not the paper's numbers.")


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
    try:
        result = manager.RunInfo(run_dir, {}, {}).result_as(DemoResult)
    except DGRError as exc:
        show_error(exc, "Demo result")
        return
    if result is None:
        return
    st.markdown("**Results** (percent, mean over seeds; refusal on held-out harmful prompts, over-refusal on benign "
                "ones, accuracy on reasoning; 95% intervals per run on the Safety-tax page and in the report)")
    pivot = demo_pivot(result)
    st.dataframe(pivot, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.0f%%") for c in pivot.columns[2:]})
    refine = result.refine
    if refine.n:
        st.caption(f"{refine.n_fell_back or 0} of {refine.n} rewrites fell back to the original "
                   f"({refine.fallback_rate or 0:.0%}).")
    nll = {which: result.shift.get(which, {}).get("nll_total") for which in ("original", "refined")}
    if all(v is not None for v in nll.values()):
        st.caption(f"Mean NLL per token under the base model: original {nll['original']:.2f}, refined "
                   f"{nll['refined']:.2f} nats (lower = closer to the model's own distribution).")
    row = st.container(horizontal=True)
    for script, label, url in RESULT_PAGES:
        _page_link(row, script, label, url)


def _page_link(where, script: str, label: str, url: str) -> None:
    """A link to another page of the app; a plain link when the page runs on its own (AppTest of one page file),
    where the router's pages are not registered."""
    try:
        where.page_link(script, label=label, icon=":material/arrow_forward:")
    except StreamlitAPIException:
        where.markdown(f"[{label}](/{url})")
