"""DGR Lens: the router. Page config, the navigation over the pages (one script per workflow step) and the shared
sidebar (workspace, target model, backend, device). No page logic here.

    streamlit run app.py          # or: make app

The sidebar is rendered here, once per run, for whatever page is open: the pages themselves never call it, so its
widgets (keys `model_ref`, `backend`, …) exist exactly once and keep their values across pages.

The page scripts live in `views/`, not `pages/`: Streamlit auto-discovers a folder named `pages/` and, on a freshly
started server, serves a page URL opened first (a bookmark: /safety_tax) as a bare script without this router until
app.py has run once. Every URL must open the same app, so the scripts are in a folder Streamlit does not scan.

The Datasets page is `views/data.py`, not `datasets.py`: a script runs with its own folder on sys.path (AppTest
opens page files directly), where a `datasets.py` would shadow the Hugging Face `datasets` library.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dgr_ui.common import sidebar

PAGES_DIR = Path(__file__).resolve().parent / "views"

# Section -> (script, title, icon), in the order of the workflow. A script that is missing is left out. The URL
# of a page is its title in lower case with "_" for spaces (/datasets, /safety_tax).
SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Data": [
        ("data.py", "Datasets", ":material/dataset:"),
        ("shift.py", "Shift", ":material/scatter_plot:"),
        ("compare.py", "Compare", ":material/compare:"),
    ],
    "Method": [
        ("refine.py", "Refine", ":material/auto_fix_high:"),
        ("train.py", "Train", ":material/model_training:"),
        ("evaluate.py", "Evaluate", ":material/fact_check:"),
    ],
    "Results": [
        ("runs.py", "Runs", ":material/history:"),
        ("safety_tax.py", "Safety tax", ":material/trending_down:"),
        ("report.py", "Report", ":material/description:"),
    ],
}
DEFAULT_PAGE = "data.py"


def pages() -> dict[str, list[st.Page]]:
    """`st.Page`s of the scripts that exist, grouped by section."""
    nav: dict[str, list[st.Page]] = {}
    for section, entries in SECTIONS.items():
        found = [st.Page(PAGES_DIR / script, title=title, icon=icon, default=script == DEFAULT_PAGE,
                         url_path=title.lower().replace(" ", "_"))
                 for script, title, icon in entries if (PAGES_DIR / script).is_file()]
        if found:
            nav[section] = found
    return nav


def _served_address() -> str | None:
    """The address a real server listens on ("" = every interface); None under AppTest (no real server)."""
    from streamlit import runtime
    from streamlit.runtime import Runtime

    if not runtime.exists() or not isinstance(runtime.get_instance(), Runtime):
        return None
    return st.get_option("server.address") or ""


def access_gate() -> None:
    """Shared-server guard (dgr_core.security): refuse to serve on a non-loopback address without a token, and
    with DGR_ACCESS_TOKEN set ask each browser session for it once (constant-time comparison)."""
    from dgr_core.security import access_token, is_loopback, token_matches

    expected, address = access_token(), _served_address()
    if address is not None and not is_loopback(address) and not expected:
        st.error(f"This server listens on `{address or 'every interface'}` without an access token: anyone who "
                 "reaches the port could read data and run jobs. Restart with `dgr app` (127.0.0.1) or set "
                 "DGR_ACCESS_TOKEN.", icon="🔒")
        st.stop()
    if not expected or st.session_state.get("dgr_access_ok"):
        return
    st.title("DGR Lens")
    given = st.text_input("Access token", type="password", key="dgr_access_token",
                          help="This server was started with DGR_ACCESS_TOKEN: ask its owner.")
    if given and token_matches(given, expected):
        st.session_state["dgr_access_ok"] = True
        st.session_state.pop("dgr_access_token", None)
        st.rerun()
    if given:
        st.error("Wrong access token.")
    st.stop()


st.set_page_config(page_title="DGR Lens", page_icon=":material/biotech:", layout="wide")
access_gate()
current = st.navigation(pages())
sidebar()
current.run()
