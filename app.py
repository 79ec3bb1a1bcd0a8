"""DGR Lens: the router. Page config, the navigation over the pages (one script per workflow step) and the shared
sidebar (workspace, target model, backend, device). No page logic here.

    streamlit run app.py          # or: make app

The sidebar is rendered here, once per run, for whatever page is open: the pages themselves never call it, so its
widgets (keys `model_ref`, `backend`, …) exist exactly once and keep their values across pages.

The Datasets page is `pages/data.py`, not `datasets.py`: a script runs with its own folder on sys.path (AppTest
opens page files directly), where a `datasets.py` would shadow the Hugging Face `datasets` library.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dgr_ui.common import sidebar

PAGES_DIR = Path(__file__).resolve().parent / "pages"

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


st.set_page_config(page_title="DGR Lens", page_icon=":material/biotech:", layout="wide")
current = st.navigation(pages())
sidebar()
current.run()
