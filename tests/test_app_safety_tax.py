"""The Safety-tax page in AppTest: a helpful empty state; on planted runs the scatter (one point per run), the
fit line and correlations, the results table and the budget curve; the axis choices; presentation mode."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_safety_tax import plant_workspace

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "safety_tax.py")


def _open(ws) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = "fake"
    return at.run()


def _charts(at: AppTest) -> list[dict]:
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_empty_workspace_explains_what_to_do(ws):
    at = _open(ws)
    assert not at.exception and not at.error
    assert any("No finished training runs yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_planted_runs_show_scatter_table_and_budget(ws):
    runs = plant_workspace(ws)
    at = _open(ws)
    assert not at.exception and not at.error
    scatter, budget = _charts(at)
    ids = {c[0] for t in scatter["data"] if t.get("customdata") for c in t["customdata"]}
    assert ids == set(runs)
    assert any(t.get("name") == "least-squares fit" for t in scatter["data"])
    assert any("Pearson r = -1.00" in s.value for s in at.success)  # planted: accuracy falls linearly with NLL
    table = at.dataframe[0].value
    assert list(table["method"]) == ["base model", "SFT", "SFT on refined"]
    assert {t["name"] for t in budget["data"]} == {"star · original", "star · refined"}


def test_axis_choices_change_the_plot(ws):
    plant_workspace(ws)
    at = _open(ws)
    assert at.selectbox(key="tax_x").options == ["mean NLL (total)", "mean NLL (reasoning)", "mean NLL (answer)"]
    at.selectbox(key="tax_y").set_value("reasoning_drop_avg").run()
    scatter = _charts(at)[0]
    assert "drop" in scatter["layout"]["yaxis"]["title"]["text"]
    assert any("Pearson r = 1.00" in s.value for s in at.success)  # the drop rises with the shift
    at.selectbox(key="tax_reference").set_value("selfgen").run()
    assert "ΔNLL vs reference (total)" in at.selectbox(key="tax_x").options


def test_unscored_runs_are_named_and_tables_still_show(ws):
    plant_workspace(ws, scores=False)
    at = _open(ws)
    assert not at.exception
    assert any("Not scored yet" in w.value for w in at.warning)
    assert at.dataframe and len(_charts(at)) == 1  # the budget curve needs no scores


def test_presentation_mode_one_large_figure_per_screen(ws):
    plant_workspace(ws)
    at = _open(ws)
    at.toggle(key="tax_present").set_value(True).run()
    assert not at.exception
    charts = _charts(at)
    assert len(charts) == 1 and charts[0]["layout"]["font"]["size"] == 22
    at.button(key="tax_next").click().run()
    assert not _charts(at) and at.dataframe  # slide 2: the results table
    at.button(key="tax_next").click().run()
    assert len(_charts(at)) == 1 and "refusal rate (%)" in str(_charts(at)[0]["layout"]["annotations"])
    at.button(key="tax_prev").click().run()
    assert not _charts(at) and at.dataframe  # back to the table


def test_evaluations_with_other_settings_are_left_out_and_named(ws):
    """A 10-item greedy evaluation of the trained model never sits beside the base model's 100-item sampled one:
    the table shows one of them, with n in each cell, and the page names the evaluation left out and why."""
    from test_safety_tax import BASE, save_dataset, train_run
    from test_safety_tax_joins import GREEDY, SAMPLED, _eval, _sig

    save_dataset(ws, "star", 4)
    train_run(ws, "20250102-000000-train-r1", "star", ["star-0", "star-1"], 0)
    _eval(ws, "20250103-000000-eval-base", BASE, 0.60, _sig(100, SAMPLED, 4), "2025-01-03T00:00:00+00:00")
    _eval(ws, "20250103-000001-eval-trained", "run:20250102-000000-train-r1", 1.0, _sig(10, GREEDY, 1),
          "2025-01-03T00:00:01+00:00")
    at = _open(ws)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    cells = table["math500"].tolist()
    assert cells.count("–") == 1 and any("n=" in c for c in cells)
    assert any("Compared like for like" in c.value for c in at.caption)
    left_out = [e for e in at.expander if e.label.startswith("Left out: 1 evaluation")]
    assert left_out and "items: 10" in left_out[0].markdown[0].value
