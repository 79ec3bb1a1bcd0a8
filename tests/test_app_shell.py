"""The app shell in AppTest: app.py (router + sidebar) and every page script under views/ open on a workspace holding
the demo datasets without an exception, and the navigation registers every page script."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dgr_core.data.demo import DEMO_EXTERNAL

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["app.py", *sorted(str(p.relative_to(REPO)) for p in (REPO / "views").glob("*.py"))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_opens_without_exception(demo_ws, script):
    # The fake backend keeps this fast (no model files read); the browser test opens every page on the defaults.
    at = AppTest.from_file(str(REPO / script), default_timeout=60)
    at.session_state["backend"] = "fake"
    at.run()
    assert not at.exception, f"{script}: {[e.value for e in at.exception]}"
    assert at.title, f"{script} shows no title"


def test_app_opens_on_datasets_with_the_shared_sidebar(demo_ws):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["backend"] = "fake"  # the sidebar's choice, as a person would pick it
    at.run()
    assert not at.exception
    assert at.title[0].value == "Datasets"
    assert DEMO_EXTERNAL in at.selectbox(key="ds_selected").options
    # The sidebar is rendered by app.py, once: each of its widgets exists exactly once.
    keys = [getattr(e, "key", None) for e in at.sidebar]
    for key in ("model_ref", "model_device", "model_dtype", "backend", "model_trust"):
        assert keys.count(key) == 1, key
    assert at.sidebar.text_input(key="model_ref").value == "demo"
    assert at.sidebar.selectbox(key="backend").value == "fake"
    assert str(demo_ws.root) in " ".join(c.value for c in at.sidebar.caption)
    # Pages read the sidebar through session state: the Datasets page counts tokens with the fake tokenizer.
    assert any("tokens of `fake`" in c.value for c in at.main.caption)


def test_navigation_registers_every_page_script(demo_ws):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["backend"] = "fake"
    at.run()
    for script in SCRIPTS[1:]:
        at.switch_page(script)  # ValueError if st.navigation did not register the file
