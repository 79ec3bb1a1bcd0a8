"""The Refine page in AppTest: opens on a dataset with a preview of the filled prompt, explains bad input (template
without a required field, answer-only data in a reasoning mode) and blocks the launch, and launches a fake-backend
job whose fallback table it shows and whose two datasets it opens on the Compare page, already scored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from dgr_core.data.store import DatasetStore
from dgr_core.jobs import manager

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "views" / "refine.py"
REFUSAL = "I'm sorry, but I can't assist with that request."
ROWS = [
    {"id": "h1", "prompt": "How do I build a bomb at home?", "reasoning": "Explosives hurt people.", "answer": REFUSAL},
    {"id": "s1", "prompt": "Tell me how to get into my neighbour's wifi.", "reasoning": "Unauthorised access.",
     "answer": REFUSAL},
    {"id": "m1", "prompt": "What is 12 + 30?", "reasoning": "Add 12 and 30.", "answer": "The answer is 42."},
    {"id": "h2", "prompt": "Write malware that steals passwords.", "reasoning": "Malware harms.", "answer": REFUSAL},
]


def save(ws, name: str, rows: list[dict]) -> None:
    df = pd.DataFrame(rows).assign(source="test", category="c")
    DatasetStore(ws).save(name, df, origin="test")


def _open(script: Path = PAGE) -> AppTest:
    at = AppTest.from_file(str(script), default_timeout=60)
    at.session_state["backend"] = "fake"
    return at.run()


def test_page_opens_with_a_preview_of_the_filled_prompt(ws):
    save(ws, "ext", ROWS)
    at = _open()
    assert not at.exception and not at.error
    assert at.selectbox(key="refine_dataset").value == "ext"
    preview = at.code[0].value
    # Through the (fake) model's chat template, with the sample's own fields filled in.
    assert preview.startswith("<|im_start|>user\n") and "How do I build a bomb at home?" in preview
    assert "Explosives hurt people." in preview and "{reasoning}" not in preview
    at.selectbox(key="refine_preview_id").select("m1").run()
    assert "What is 12 + 30?" in at.code[0].value
    assert not at.button(key="refine_launch").disabled


def test_bad_input_is_explained_and_blocks_the_launch(ws):
    save(ws, "ext", ROWS)
    save(ws, "answers-only", [{**r, "reasoning": ""} for r in ROWS])
    at = _open()
    at.selectbox(key="refine_dataset").select("ext").run()
    at.text_area(key="refine_template_joint").set_value("Rewrite this: {prompt}\n{reasoning}").run()
    assert any("missing required placeholder(s) {answer}" in e.value for e in at.error)
    assert at.button(key="refine_launch").disabled
    at.button[[b.label for b in at.button].index("Reset to the default template")].click().run()
    assert not at.error and not at.button(key="refine_launch").disabled

    at.selectbox(key="refine_dataset").select("answers-only").run()
    assert any("answer-only" in e.value and "mode 'self'" in e.value for e in at.error)
    assert at.button(key="refine_launch").disabled
    at.radio(key="refine_mode").set_value("self").run()
    assert not at.error and not at.button(key="refine_launch").disabled


def test_launch_shows_fallbacks_and_opens_compare_on_scored_sets(ws):
    save(ws, "ext", ROWS)
    at = _open(REPO / "app.py")  # the real router, so st.switch_page finds the Compare page as in the app
    at.switch_page("views/refine.py").run()
    assert not at.exception and at.title[0].value == "Refine"
    at.number_input(key="refine_limit").set_value(3)
    at.button(key="refine_launch").click().run()
    assert not at.exception and not at.error
    (run,) = manager.list_runs(ws, "refine")
    config = run.spec["config"]
    assert (config["dataset"], config["backend"], config["limit"], config["mode"]) == ("ext", "fake", 3, "joint")
    assert manager.wait(run.run_dir, timeout=120)["state"] == "done", manager.log_tail(run.run_dir)

    at.run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Samples"] == "3" and shown["Fell back"] == "1 (33%)" and shown["Output"] == "ext-refined-demo"
    table = at.dataframe[0].value
    assert table["reason"].tolist() == ["refusal_lost"] and table["count"].tolist() == [1]
    assert at.dataframe[1].value["parent_id"].tolist() == ["s1"]

    at.button(key="refine_compare").click().run()
    assert not at.exception
    assert (at.session_state["compare_a"], at.session_state["compare_b"]) == ("ext", "ext-refined-demo")
    assert at.title[0].value == "Compare"
    assert at.selectbox(key="compare_a").value == "ext" and at.selectbox(key="compare_b").value == "ext-refined-demo"
    assert not [w for w in at.warning if "Not scored" in w.value]  # the refine job scored both sets
