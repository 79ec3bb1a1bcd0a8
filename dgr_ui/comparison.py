"""Two evaluate runs side by side, the same way on the Evaluate and Runs pages: the metric deltas with a warning
for every benchmark that is not like for like, and the paired test on one benchmark both runs have. Each page
renders the test's figures its own way."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dgr_core import runs
from dgr_core.errors import DGRError
from dgr_core.evaluate.paired import PairedResult
from dgr_core.jobs import manager
from dgr_core.jobs.results import EvalResult
from dgr_ui.common import show_error


def metric_deltas_view(res_a: EvalResult, res_b: EvalResult, column_config: dict[str, Any] | None = None) -> None:
    """The per-benchmark deltas (b - a), and a warning for each benchmark whose delta is not an effect."""
    deltas = runs.metric_deltas(res_a, res_b)
    st.dataframe(deltas, hide_index=True, width="stretch", column_config=column_config)
    for row in deltas[~deltas["comparable"]].itertuples():
        st.warning(f"{row.benchmark}: not like for like ({row.why_not}); its delta is not an effect.")


def paired_test(a: manager.RunInfo, b: manager.RunInfo, res_a: EvalResult, res_b: EvalResult,
                key: str) -> tuple[str, pd.DataFrame, PairedResult] | None:
    """Pick a benchmark both runs have (widget `key`) and run the paired test of b against a on it:
    (benchmark, per-item table, test), or None with the reason shown."""
    common = runs.common_benchmarks(res_a, res_b)
    if not common:
        st.info("The two runs share no benchmark.")
        return None
    bench = st.selectbox("Paired test on", common, key=key)
    try:
        table, test = runs.paired_outcomes(a, b, bench)
    except DGRError as exc:
        show_error(exc, "Paired test")
        return None
    return bench, table, test
