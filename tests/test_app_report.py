"""The Report page in AppTest: a helpful empty state; on planted runs the options, building the report (its
content follows the chosen sections), the download button and the preview."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_safety_tax import plant_workspace

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "report.py")


def _open(ws) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = "fake"
    return at.run()


def test_empty_workspace_explains_what_to_do(ws):
    at = _open(ws)
    assert not at.exception and not at.error
    assert any("nothing to report" in i.value for i in at.info)
    assert not at.button


def test_build_download_and_preview(ws):
    runs = plant_workspace(ws)
    at = _open(ws)
    assert not at.exception and not at.error
    at.text_input(key="report_title").set_value("Group meeting")
    at.checkbox(key="report_inc_configs").uncheck()
    at.button(key="report_build").click().run()
    assert not at.exception and not at.error
    doc = at.session_state["report_html"]
    assert "<h1>Group meeting</h1>" in doc and "fig-scatter" in doc and "fig-budget" in doc
    assert "Runs and configs" not in doc  # unchecked
    assert all(run_id in doc for run_id in runs)  # every run is a point of the scatter
    assert at.session_state["report_file_name"].endswith(".html")
    assert any(e.proto.label.startswith("Download the report") for e in at.get("download_button"))
    at.toggle(key="report_preview").set_value(True).run()
    assert not at.exception and at.get("iframe")


def test_reference_enables_delta_statistics(ws):
    plant_workspace(ws)
    at = _open(ws)
    at.selectbox(key="report_reference").set_value("selfgen").run()
    at.selectbox(key="report_x").set_value("delta_nll_total")
    at.button(key="report_build").click().run()
    doc = at.session_state["report_html"]
    assert "ΔNLL vs reference (total)" in doc and '"reference": "selfgen"' in doc
