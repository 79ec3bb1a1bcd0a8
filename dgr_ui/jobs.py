"""The job panel: launch a job, then poll it with `st.fragment(run_every=…)` — progress bar, ETA, throughput,
cancel — and a table of past runs. Reads only the files the job writes (status.json, progress.jsonl, result.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dgr_core.errors import DGRError
from dgr_core.jobs import manager
from dgr_core.workspace import Workspace

STATE_ICON = {"queued": "⏳", "waiting": "⏳", "running": "🔄", "done": "✅", "failed": "❌", "cancelled": "⏹️"}


def launch(ws: Workspace, kind: str, config: dict[str, Any], *, name: str = "", key: str) -> Path | None:
    """Submit a job and remember it under `key` for this page; a bad config shows an error instead."""
    try:
        run = manager.submit(ws, kind, config, name=name)
    except DGRError as exc:
        st.error(f"Cannot start {kind}: {exc}", icon="⚠️")
        return None
    st.session_state[f"run:{key}"] = str(run)
    return run


def tracked(key: str) -> Path | None:
    value = st.session_state.get(f"run:{key}")
    return Path(value) if value else None


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def render_status(run_dir: Path, key: str) -> str:
    """One snapshot of a run: state, progress bar, throughput, ETA, error and cancel button. Returns the state."""
    st_ = manager.status(run_dir)
    state = st_.get("state", "unknown")
    events = manager.progress_events(run_dir, last=1)
    ev = events[-1] if events else {}
    done, total = ev.get("done") or 0, ev.get("total")
    label = f"{STATE_ICON.get(state, '')} **{state}** · `{run_dir.name}`"
    if ev.get("message"):
        label += f" · {ev['message']}"
    st.markdown(label)
    if total:
        st.progress(min(1.0, done / total), text=f"{done} / {total} {ev.get('unit', '')}")
    cols = st.columns(4)
    if ev.get("samples_per_s"):  # generation jobs: prompt processing dominates, samples/s is what to read
        cols[0].metric("samples/s", f"{ev['samples_per_s']:.2f}")
    else:
        cols[0].metric("tokens/s", f"{ev['tokens_per_s']:.0f}" if ev.get("tokens_per_s") else "–")
    cols[1].metric("ETA", _fmt_eta(ev.get("eta_s")))
    cols[2].metric("padding", f"{ev['padding']:.0%}" if ev.get("padding") is not None else "–")
    if ev.get("loss") is not None:
        cols[3].metric("loss", f"{ev['loss']:.3f}")
    if state in ("queued", "waiting", "running"):
        if cols[3].button("Cancel", key=f"cancel-{key}-{run_dir.name}"):
            manager.cancel(run_dir)
    if state == "failed":
        st.error(st_.get("error") or "failed", icon="❌")
        with st.expander("Log"):
            st.code(manager.log_tail(run_dir), language="text")
    if state in ("failed", "cancelled") and st.button("Resume", key=f"resume-{key}-{run_dir.name}"):
        try:  # another tab (or a double click) may have resumed it since this was drawn
            manager.resume(run_dir)
        except DGRError as exc:
            st.warning(str(exc))
    return state


def job_panel(run_dir: Path | None, key: str, every: float = 1.0) -> None:
    """Live view of one run: re-renders every `every` seconds while it is active; stops polling when it ends."""
    if run_dir is None:
        return

    @st.fragment(run_every=every)
    def _live():
        state = render_status(run_dir, key)
        if state in manager.FINAL and not st.session_state.get(f"final:{run_dir}"):
            st.session_state[f"final:{run_dir}"] = True
            st.rerun()  # once, so the page can show the finished results

    state = manager.status(run_dir).get("state")
    if state in manager.FINAL:
        render_status(run_dir, key)
    else:
        _live()


def runs_table(ws: Workspace, kind: str | None = None) -> pd.DataFrame:
    rows = []
    for r in manager.list_runs(ws, kind):
        rows.append({"run": r.id, "kind": r.kind, "state": f"{STATE_ICON.get(r.state, '')} {r.state}",
                     "name": r.spec.get("name", ""), "created": r.spec.get("created_at", ""),
                     "error": r.status.get("error") or ""})
    return pd.DataFrame(rows)
