"""The per-sample outputs browser of an evaluation run (Evaluate and Runs pages): filter by benchmark, outcome and
text, show the table, and optionally read one sample in full."""

from __future__ import annotations

import streamlit as st

from dgr_core import runs
from dgr_core.jobs import manager

ALL = "(all)"


def outputs_browser(info: manager.RunInfo, key: str, columns: list[str], *, read_one: bool = False) -> None:
    """Filters and the table of `info`'s outputs (`columns` shown); with `read_one`, a picker that prints one
    sample's prompt and response."""
    df = runs.load_outputs(info)
    if df.empty:
        st.info("This run has no outputs yet.")
        return
    col1, col2, col3 = st.columns(3)
    bench = col1.selectbox("Benchmark", [ALL, *df["benchmark"].dropna().unique()], key=f"{key}_bench")
    verdict = col2.selectbox("Outcome", [ALL, *sorted(df["verdict"].dropna().unique())], key=f"{key}_verdict")
    text = col3.text_input("Contains", key=f"{key}_text")
    shown = runs.filter_outputs(df, benchmark=None if bench == ALL else bench,
                                verdict=None if verdict == ALL else verdict, text=text or None)
    st.caption(f"{len(shown)} of {len(df)} samples")
    st.dataframe(shown[columns], hide_index=True, width="stretch")
    if read_one and len(shown):
        sample = st.selectbox("Read one sample", shown["id"].tolist(), key=f"{key}_sample")
        row = shown[shown["id"] == sample].iloc[0]
        st.markdown(f"**Prompt** · {row['benchmark']} · {row['verdict']}")
        st.text(row["prompt"])
        st.markdown("**Response**")
        st.text(row["response"])
