"""Numbers and configs as people read them (dgr_ui.readable), and the Runs page showing configs as tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dgr_core.jobs.results import EvalResult
from dgr_core.runs import metrics_table
from dgr_ui.readable import metrics_view, readable, settings_table

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, text", [(0.0003, "3.0e-04"), (2.897474, "2.9"), (155.77, "156"), (0.52, "0.52"),
                                         (12345.6, "12,346"), (3, "3"), (20000, "20,000"), (None, "–"),
                                         (math.nan, "–"), (True, "yes"), ([1, 2], "1, 2"), ([], "–"), ("x", "x"),
                                         (0.0, "0.0")])
def test_readable(value, text):
    assert readable(value) == text


def test_settings_table_flattens_nested_configs():
    table = settings_table({"model": {"ref": "demo", "dtype": None}, "train": {"learning_rate": 0.0003},
                            "benchmarks": [{"name": "xstest", "limit": 50}]})
    assert table.set_index("setting")["value"].to_dict() == {
        "model.ref": "demo", "model.dtype": "–", "train.learning_rate": "3.0e-04", "benchmarks.0.name": "xstest",
        "benchmarks.0.limit": "50"}


def test_metrics_view_reads_in_percent():
    result = {"metrics": {"advbench50": {"kind": "harmful", "metric": "refusal_rate", "value": 0.52,
                                         "ci": [0.385, 0.652], "n": 50, "n_total": 50, "n_truncated": 32}}}
    view = metrics_view(metrics_table(EvalResult.from_dict(result)))
    # A count the result did not record reads "–" (n_malformed may be absent); n_no_answer has the typed default 0.
    assert view.loc[0, ["value", "95% CI", "n", "n_truncated", "n_malformed", "n_no_answer"]].tolist() == \
        ["52%", "38–65%", "50", "32", "–", "0"]
    assert list(view.columns).index("95% CI") == list(view.columns).index("value") + 1


def test_runs_page_shows_config_status_and_result_as_tables(ws):
    from test_app_runs import finished_eval_run

    run_dir = finished_eval_run(ws, "small", limit=2)
    at = AppTest.from_file(str(REPO / "views" / "runs.py"), default_timeout=60).run()
    assert not at.exception
    at.selectbox(key="runs_detail").select(run_dir.name).run()
    frames = [d.value for d in at.dataframe]
    settings = [f for f in frames if list(f.columns) == ["setting", "value"]]
    assert len(settings) >= 3  # config, status, result
    config = settings[0].set_index("setting")["value"]
    assert config["limit"] == "2" and config["benchmarks.0.name"] == "arithmetic"
    metrics = next(f for f in frames if "95% CI" in f.columns)
    assert metrics["value"].str.endswith("%").all()
    assert isinstance(metrics, pd.DataFrame)
