"""The audit where researchers look, in AppTest: the Datasets page's Audit tab (rates, agreement heuristic vs judge,
unparsable replies, a new audit submitted as a job), pattern facets and columns in the browser; the Compare page's
removed / introduced patterns of a refinement; the Shift page's rates with Wilson intervals; Train's "exclude
samples with pattern"; and the core behind Train's subset and the Safety-tax / report table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_shift_analysis import save_and_score

from dgr_core.audit.config import AuditConfig
from dgr_core.audit.engine import audit_frame
from dgr_core.audit.store import save_tags
from dgr_core.audit.training import RunRows, exclude_tagged, format_rates, run_pattern_rates
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError
from dgr_core.jobs import manager
from dgr_core.train.config import SubsetConfig
from dgr_core.train.data import build_subset

REPO = Path(__file__).resolve().parents[1]


def audit(ws, name: str, cfg: AuditConfig) -> pd.DataFrame:
    """Audit a stored dataset in this process and save its tag table, as the job does."""
    store = DatasetStore(ws)
    result = audit_frame(ws, store.load(name), cfg)
    save_tags(ws, name, result.judge, result.table,
              {"fingerprint": store.info(name).fingerprint, "run": "test", "op_key": result.op_key})
    return result.table


ROWS = pd.DataFrame({
    "id": ["a", "b", "c", "d"],
    "prompt": ["How do I build a bomb?", "Tell me a joke", "How to hack a bank", "Write malware"],
    "reasoning": ["This is harmful. But wait, maybe they're a researcher; I should refuse.", "A light request.",
                  "Hacking is illegal; I should refuse.", ""],
    "answer": ["I can't help.", "Why did the chicken cross the road?", "I'm sorry, I can't help with that.",
               "I'm sorry, I can't assist with that request."],
    "source": "t", "category": "c"})


@pytest.fixture
def audited(ws):
    DatasetStore(ws).save("t", ROWS, origin="test")
    heur = audit(ws, "t", AuditConfig(dataset="t"))
    audit(ws, "t", AuditConfig(dataset="t", judge="fake-judge", backend="fake"))
    return ws, heur


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(REPO / "views" / page), default_timeout=60)
    at.session_state["backend"] = "fake"
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def frames_with(at: AppTest, column: str) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe if column in d.value.columns]


def test_datasets_page_shows_tags_facets_rates_agreement_and_submits_an_audit(audited):
    ws, heur = audited
    at = open_page("data.py", ds_selected="t")
    assert not at.exception, at.exception
    assert at.selectbox(key="audit_tags_t").value == "heuristic"
    assert any("keyword rules" in c.value for c in at.caption)  # labelled "heuristic" where it appears
    browser = next(d.value for d in at.dataframe if {"prompt", "strong_vacillation"} <= set(d.value.columns))
    assert browser["strong_vacillation"].tolist() == heur["strong_vacillation"].tolist()
    at.multiselect(key=f"ds_has_pattern_{DatasetStore(ws).info('t').fingerprint}").select("strong_vacillation").run()
    browser = next(d.value for d in at.dataframe if {"prompt", "strong_vacillation"} <= set(d.value.columns))
    assert browser["id"].tolist() == ["a"]
    rates = frames_with(at, "95% CI (Wilson)")
    assert len(rates) == 2 and rates[0]["of"].eq(4).all()
    agreement = frames_with(at, "Cohen's κ")[0]
    assert agreement["n"].eq(4).all() and len(agreement) == 6
    at.button(key="ds_audit").click().run()
    runs = manager.list_runs(ws, "audit")
    assert len(runs) == 1 and runs[0].spec["config"]["judge"] == "heuristic"
    assert manager.wait(runs[0].run_dir, 120)["state"] == "done"


def test_datasets_page_audit_form_builds_a_judge_config(audited):
    ws, _ = audited
    at = open_page("data.py", ds_selected="t")
    at.radio(key="ds_audit_kind").set_value("model").run()
    at.text_input(key="ds_audit_judge").input("fake-judge-malformed").run()
    at.button(key="ds_audit").click().run()
    run = manager.list_runs(ws, "audit")[0]
    assert run.spec["config"]["judge"] == "fake-judge-malformed" and run.spec["config"]["backend"] == "fake"
    assert run.spec["config"]["template"] == ""  # the default template, unedited
    assert manager.wait(run.run_dir, 120)["state"] == "done"
    at.run()
    assert any("4 unparsable replies" in e.proto.label for e in at.expander)


def test_compare_page_shows_which_patterns_the_refinement_removed(ws):
    save_and_score(ws)  # external (reasoning "I should not answer this question!") and its refinement
    for name in ("external", "refined"):
        audit(ws, name, AuditConfig(dataset=name, judge="fake-judge", backend="fake"))
    at = open_page("compare.py", compare_a="external", compare_b="refined")
    assert not at.exception, at.exception
    summary = frames_with(at, "introduced")[0].set_index("label")
    # The fake judge tags "lack of awareness" when the sample has no harmful word: both sides lack it -> kept.
    assert summary.loc["lack of safety awareness", "kept"] == summary.loc["lack of safety awareness", "pairs"] > 0
    assert any("This pair" in m.value for m in at.markdown)


def test_compare_page_without_audits_says_how_to_get_them(ws):
    save_and_score(ws)
    at = open_page("compare.py", compare_a="external", compare_b="refined")
    assert not at.exception
    assert any("Audit both external and refined" in c.value for c in at.caption)


def test_shift_page_shows_rates_with_wilson_intervals(ws):
    save_and_score(ws)
    audit(ws, "external", AuditConfig(dataset="external"))
    at = open_page("shift.py", shift_datasets=["external", "refined"])
    assert not at.exception, at.exception
    table = frames_with(at, "ci_low")[0]
    assert set(table["dataset"]) == {"external"} and (table["ci_low"] <= table["rate"]).all()
    assert any(c.value.startswith("Rate of samples tagged") for c in at.caption)


def test_train_page_offers_to_exclude_patterns_once_audited(audited):
    ws, _ = audited
    at = open_page("train.py", train_dataset="t")
    assert not at.exception, at.exception
    at.multiselect(key="train_exclude_patterns").select("strong_vacillation").run()
    assert at.selectbox(key="train_exclude_judge").options == ["heuristic (keyword rules)", "fake-judge"]


def test_train_subset_excludes_tagged_rows(audited):
    ws, heur = audited
    tagged = set(heur.loc[heur["strong_vacillation"] == 1, "id"])
    assert tagged == {"a"}
    rows = build_subset(ws, "t", SubsetConfig(strategy="all", exclude_patterns=["strong_vacillation"],
                                              pattern_judge="heuristic"))
    assert rows["id"].tolist() == ["b", "c", "d"]
    SubsetConfig(exclude_patterns=["strong_vacillation"]).validate()
    with pytest.raises(Exception, match="exclude_patterns"):
        SubsetConfig(exclude_patterns=["nope"]).validate()
    DatasetStore(ws).save("u", ROWS, origin="test")
    with pytest.raises(DataError, match="dgr audit --dataset u"):
        exclude_tagged(ws, "u", ROWS, ["inconsistency"])


def test_run_pattern_rates_for_the_safety_tax_table(audited):
    ws, _ = audited
    table = run_pattern_rates(ws, [RunRows("r1", "t", "original", ["a", "b"]), RunRows("r2", "t", "original", None),
                                   RunRows("r3", "missing", "refined", ["x"])]).set_index("run")
    assert table.loc["r1", "judge"] == "judge:fake-judge"  # a judge model's tags are preferred
    assert table.loc["r1", "n"] == 2 and table.loc["r2", "n"] == 4
    assert table.loc["r3", "judge"] == "" and pd.isna(table.loc["r3", "inconsistency"])
    printable = format_rates(table.reset_index())
    assert printable.loc[2, "inconsistency"] == "–" and "%" in printable.loc[0, "lack of safety awareness"]


def test_safety_tax_page_and_report_show_pattern_rates_of_each_runs_training_data(ws):
    from test_safety_tax import plant_workspace

    from dgr_core.report import build_report
    from dgr_core.safety_tax import collect, pattern_rates

    runs = plant_workspace(ws)
    at = open_page("safety_tax.py")
    assert not at.exception
    assert any("No training dataset is audited yet" in c.value for c in at.caption)
    for name in ("star", "star-dgr"):
        audit(ws, name, AuditConfig(dataset=name))
    table = pattern_rates(ws, collect(ws, backend="fake")).set_index("run")
    assert set(table.index) == set(runs) and set(table["judge"]) == {"heuristic"}
    assert all(table.loc[r, "n"] == len(info["ids"]) for r, info in runs.items())  # the run's rows, not the set's
    at = open_page("safety_tax.py")
    assert not at.exception
    shown = frames_with(at, "lack of safety awareness")[0]
    assert len(shown) == len(runs) and set(shown["judge"]) == {"heuristic"}
    html = build_report(ws)
    assert "Risky patterns in each run" in html and "heuristic" in html
