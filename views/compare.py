"""Compare: two responses to the same prompt side by side, every token coloured by its surprisal under the target
model, a word diff, per-sample figures, stepping through pairs by ΔNLL or category, and export.

Pairs and the token HTML come from `dgr_core.compare`; scores from the cache (`dgr_core.shift.analysis`).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dgr_core import compare as C
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.report import export_unavailable
from dgr_core.scoring.api import ScoreConfig
from dgr_core.scoring.job import ScoreJobConfig
from dgr_core.shift import analysis as A
from dgr_ui import audit_view as AV
from dgr_ui import tokens as ui
from dgr_ui.common import show_error, workspace
from dgr_ui.jobs import job_panel, launch, tracked
from dgr_ui.render_view import what_the_model_sees
from dgr_ui.score_settings import score_settings
from dgr_ui.state import COMPARE_A, COMPARE_B

POS = "compare_pos"  # position in the ordered list of pairs (the sample picker's value)
PAIR_SIG = "compare_sig"  # which datasets / order the position refers to
ALL = "(all)"
ORDERS = {"delta": "ΔNLL (largest first)", "category": "Category, then ΔNLL", "dataset": "Dataset order"}


def score_config() -> ScoreConfig:
    with st.expander("Scoring settings (must match the ones the scores were computed with)"):
        return score_settings("compare")


def choose_datasets(names: list[str]) -> tuple[str, str]:
    c1, c2 = st.columns(2)
    a = c1.selectbox("Dataset A (reference)", names, index=0, key=COMPARE_A)
    b = c2.selectbox("Dataset B", names, index=min(1, len(names) - 1), key=COMPARE_B)
    return a, b


def scored_or_jobs(ws, names: tuple[str, str], cfg: ScoreConfig, handle) -> dict[str, A.ScoredSet | None]:
    """Each side's scores, or None with a button to score it (the page still shows the text uncoloured)."""
    out = {n: A.load_scored_set(ws, n, cfg, handle) for n in dict.fromkeys(names)}
    missing = [n for n, s in out.items() if s is None]
    if missing:
        st.warning(f"Not scored with this model and settings: {', '.join(missing)}. Tokens are shown "
                   "uncoloured until a score job has run.")
        if st.button(f"Score {len(missing)} dataset(s)", key="compare_score"):
            for name in missing:
                launch(ws, "score", ScoreJobConfig(name, cfg).to_dict(), name=f"score {name}",
                       key=f"compare-score-{name}")
        for name in missing:
            job_panel(tracked(f"compare-score-{name}"), key=f"compare-score-{name}")
    return out


def ordered_pairs(df_a: pd.DataFrame, df_b: pd.DataFrame, sets, a: str, b: str) -> tuple[pd.DataFrame, str, str]:
    """The pairs in stepping order, the ΔNLL segment, and a signature of the list (the stepper resets on change)."""
    pairs = C.pair_rows(df_a, df_b)
    table = C.pair_table(pairs, sets[a].result.table if sets[a] else None,
                         sets[b].result.table if sets[b] else None)
    c1, c2, c3 = st.columns(3)
    by = c1.selectbox("Order", list(ORDERS), format_func=ORDERS.get, key="compare_order")
    segment = c2.selectbox("ΔNLL of", list(C.SEGMENTS), index=2, key="compare_segment")
    category = c3.selectbox("Category", [ALL, *C.pair_categories(table)], key="compare_category")
    out = C.order_pairs(table, by, segment, category=None if category == ALL else category)
    out.attrs["paired_by"] = pairs.attrs.get("paired_by")
    return out, segment, f"{a}|{b}|{by}|{segment}|{category}"


def _step(delta: int, n: int) -> None:
    """Previous / next: runs before the rerun, so it may move the sample picker's value."""
    st.session_state[POS] = min(max(int(st.session_state.get(POS, 0)) + delta, 0), n - 1)


def stepper(table: pd.DataFrame, segment: str, sig: str) -> int:
    """Previous / next buttons and a sample picker; the position resets to the first pair when the list changes."""
    n = len(table)
    if st.session_state.get(PAIR_SIG) != sig:
        st.session_state[PAIR_SIG] = sig
        st.session_state[POS] = 0
    st.session_state[POS] = min(max(int(st.session_state.get(POS, 0)), 0), n - 1)  # before the widget exists
    labels = C.pair_labels(table, segment)
    c1, c2, c3 = st.columns([1, 1, 5])
    c1.button("◀ Previous", key="compare_prev", on_click=_step, args=(-1, n),
              disabled=st.session_state[POS] <= 0)
    c2.button("Next ▶", key="compare_next", on_click=_step, args=(1, n),
              disabled=st.session_state[POS] >= n - 1)
    c3.selectbox(f"Sample ({n} pairs)", range(n), key=POS, format_func=labels.__getitem__,
                 label_visibility="collapsed")
    return int(st.session_state[POS])


def side_view(row: dict, scored: A.ScoredSet | None, handle, cfg: ScoreConfig) -> C.TokenView:
    if scored is None:
        return C.unscored_view(row, handle.tokenizer, cfg.render_config())
    return C.token_view(row, scored.result.arrays(str(row["id"])), handle.tokenizer, cfg.render_config())


def show_pair(pair: pd.Series, rows: tuple[dict, dict], names: tuple[str, str], sets, handle,
              cfg: ScoreConfig) -> None:
    with st.expander("Prompt", expanded=True):
        st.text(str(pair["prompt"]))
    views, cols = [], st.columns(2)
    for col, row, name in zip(cols, rows, names, strict=True):
        with col:
            st.markdown(f"**{name}** · `{row['id']}`")
            try:
                view = side_view(row, sets[name], handle, cfg)
            except DGRError as exc:
                show_error(exc, name)
                view = C.plain_view(str(row.get("answer") or ""))
            ui.show_tokens(view)
            views.append(view)
    ui.show_legend()
    what_the_model_sees(list(zip(names, rows, strict=True)), "compare_sees", handle.tokenizer, cfg.render_config())
    figures = C.sample_figures(pair)
    st.subheader("Per-sample figures")
    c1, c2 = st.columns([2, 3])
    c1.dataframe(figures)
    c2.plotly_chart(ui.segment_figure(figures, *names), key="compare_segments")
    diff = diff_part(rows)
    export(rows, names, tuple(views), pair, diff, handle)


def diff_part(rows: tuple[dict, dict]) -> str:
    st.subheader("Word diff (A → B)")
    part = st.radio("Of", ["answer", "reasoning"], horizontal=True, key="compare_diff_part")
    ops = C.word_diff(str(rows[0].get(part) or ""), str(rows[1].get(part) or ""))
    st.caption(f"{C.diff_ratio(ops):.0%} of the {part} unchanged · deleted in red, inserted in green")
    diff = C.diff_html(ops)
    st.html(diff)
    return diff


def export(rows, names, views, pair, diff: str, handle) -> None:
    """Self-contained HTML of this comparison, and a PNG of both responses as token grids for slides."""
    st.subheader("Export")
    doc = C.comparison_document(names, rows, views, pair, diff=diff, model=str(handle.identity.get("ref", "")))
    fig = ui.comparison_figure(dict(zip((f"A · {names[0]}", f"B · {names[1]}"), views, strict=True)),
                               title=f"{names[0]} vs {names[1]} · {rows[0]['id']} ↔ {rows[1]['id']}")
    c1, c2 = st.columns(2)
    c1.download_button("Download HTML", doc, file_name=C.export_name(rows, "html"), mime="text/html",
                       key="compare_html")
    why = export_unavailable()
    # The PNG is rendered only when clicked (a callable runs on the click, outside this script run).
    c2.download_button("Download PNG for slides", lambda: ui.export_png(fig)[0] or b"", disabled=bool(why),
                       file_name=C.export_name(rows, "png"), mime="image/png", key="compare_png", help=why)
    with st.expander("Slide image preview"):
        st.plotly_chart(fig, key="compare_grid")


def main() -> None:
    st.title("Compare")
    st.caption("Two responses to one prompt, every token coloured by how surprised the target model is by it.")
    ws = workspace()
    store = DatasetStore(ws)
    names = [info.name for info in store.list()]
    if len(names) < 1:
        st.info("No datasets yet: import one on the Datasets page, or run `dgr prepare` for the demo sets.")
        return
    a, b = choose_datasets(names)
    cfg = score_config()
    try:
        handle = A.model_handle(cfg.model, cfg.backend, ws)
        sets = scored_or_jobs(ws, (a, b), cfg, handle)
        df_a, df_b = A.dataset_frame(ws, a), A.dataset_frame(ws, b)
    except DGRError as exc:
        show_error(exc, "Loading")
        return
    table, segment, sig = ordered_pairs(df_a, df_b, sets, a, b)
    if table.empty:
        st.info(f"No rows of {a} and {b} share a prompt (nor a parent_id).")
        return
    st.caption(f"{len(table)} pairs, matched by {table.attrs.get('paired_by')}.")
    pair = table.iloc[stepper(table, segment, sig)]
    rows = (df_a.iloc[int(pair["pos_a"])].to_dict(), df_b.iloc[int(pair["pos_b"])].to_dict())
    AV.compare_panel(ws, (a, b), AV.pair_ids(df_a, df_b, table), (str(rows[0]["id"]), str(rows[1]["id"])))
    show_pair(pair, rows, (a, b), sets, handle, cfg)


main()
