"""The Shift page in AppTest, against the real score cache: an empty state; unscored datasets get a `score` job
(run for real by a worker, then the page shows them); distributions, the statistics table with intervals and one
line per statistic, the map, rankings and categories, with the fake and the tiny (hf) backends; the output family
after its embedding job; a map selection filters the table and is saved for training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_shift_analysis import _fake_encode, frames, save_and_score

from dgr_core.backends.base import get_backend
from dgr_core.data.store import DatasetStore
from dgr_core.jobs import manager
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig
from dgr_core.shift import analysis as A
from dgr_core.shift import maps, sentences
from dgr_core.shift.selections import load_selection

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "shift.py")


def _open(datasets: list[str] | None = None, backend: str = "fake", model: ModelSpec | None = None,
          tab: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = backend
    if tab is not None:
        at.session_state["shift_tab"] = tab
    if model is not None:
        at.session_state["target_model"] = model
    if datasets is not None:
        at.session_state["shift_datasets"] = datasets
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _switch(at: AppTest, tab: str) -> None:
    """Open another tab of the page (the tab radio's state), rerun, and check the page rendered cleanly."""
    at.session_state["shift_tab"] = tab
    at.run()
    _ok(at)


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _values(v) -> list:
    """A trace's array from the chart JSON: plotly writes numeric arrays as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def _table(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_empty_workspace_says_what_to_do(ws):
    at = _open()
    _ok(at)
    assert any("No datasets yet" in i.value for i in at.info)


def test_unscored_datasets_are_scored_by_a_job_then_shown(ws):
    store = DatasetStore(ws)
    for name, df in frames(8).items():
        store.save(name, df, origin="test")
    at = _open(["own", "external"])
    _ok(at)
    assert any("0 of 8 samples scored" in w.value for w in at.warning)
    assert not at.get("plotly_chart")  # nothing computed in the page
    at.button(key="shift_score_missing").click().run()
    _ok(at)
    runs = manager.list_runs(ws, "score")
    assert sorted(r.spec["config"]["dataset"] for r in runs) == ["external", "own"]
    for run in runs:
        assert run.spec["config"]["score"]["backend"] == "fake"
        assert manager.wait(run.run_dir, timeout=120)["state"] == "done", manager.log_tail(run.run_dir)
    _switch(at, "Shift statistics")
    assert not at.warning
    stats = _table(at, "statistic")
    assert set(stats["comparison"]) == {"external vs own"}


def test_scored_sets_show_distributions_statistics_map_and_rankings(ws):
    sets = save_and_score(ws)
    n = len(frames()["own"])
    at = _open(["own", "external", "refined"])
    _ok(at)
    (dist,) = _charts(at)  # lazy tabs: only the open one (Distributions) ran
    assert {t["name"] for t in dist["data"]} == {"own", "external", "refined"}
    summary = _table(at, "median")
    assert summary.set_index(["dataset", "segment"]).loc[("external", "answer"), "n"] == n
    at.radio(key="shift_dist_kind").set_value("ecdf").run()
    _ok(at)

    _switch(at, "Shift statistics")
    stats = _table(at, "statistic")
    assert set(stats["comparison"]) == {"external vs own", "refined vs own"}
    want = {"Mean ΔNLL (B − A)", "Perplexity ratio (B / A)", "MMD² (RBF)", "Energy distance", "Classifier AUC",
            "Centroid distance (Euclidean)", "Centroid cosine distance"}
    assert set(stats["statistic"]) == want
    assert stats["95% CI"].str.startswith("[").all() and stats["effect size"].notna().all()
    assert stats["what it measures"].str.len().gt(20).all()
    delta = stats.query("comparison == 'external vs own' and statistic == 'Mean ΔNLL (B − A)'")["value"].item()
    assert delta == pytest.approx(sets["external"].nll().mean() - sets["own"].nll().mean())
    assert any(m.label == "Mean ΔNLL (nats/token)" for m in at.metric)
    at.toggle(key="shift_all_pairs").set_value(True).run()
    assert set(_table(at, "statistic")["comparison"]) == {"external vs own", "refined vs own",
                                                          "refined vs external"}

    _switch(at, "Map")
    (scatter,) = _charts(at)
    assert sum(len(_values(t["x"])) for t in scatter["data"]) == 3 * n
    assert {tuple(c[:2]) for t in scatter["data"] for c in t["customdata"]} == {
        (name, i) for name, s in sets.items() for i in s.frame["id"]}
    assert len(_table(at, "prompt")) == 3 * n
    at.radio(key="shift_color").set_value("NLL").run()
    _ok(at)

    _switch(at, "Rankings")
    top = _table(at, "n_tokens_total")
    assert top["dataset"].iloc[0] == "external" and top["nll_total"].is_monotonic_decreasing
    (category,) = _charts(at)
    assert {t["name"] for t in category["data"]} == {"external", "refined"}  # the shift from the reference
    at.radio(key="shift_segment").set_value("answer").run()
    _ok(at)
    assert "nll_answer" in _table(at, "n_tokens_answer").columns


def test_large_umap_maps_are_a_job(ws, monkeypatch):
    save_and_score(ws)
    monkeypatch.setattr(maps, "UMAP_INLINE_MAX", 10)  # where needs_job reads it
    at = _open(["own", "external"], tab="Map")
    assert len(_charts(at)) == 1  # PCA is drawn at once
    at.radio(key="shift_method").set_value("umap").run()
    _ok(at)
    assert any("runs as a job" in i.value for i in at.info)
    assert at.button(key="shift_umap_job")
    assert not _charts(at)  # no map until the job has run


def test_output_family_after_its_embedding_job(ws, monkeypatch):
    monkeypatch.setattr(sentences, "_encode", _fake_encode)
    save_and_score(ws)
    at = _open(["own", "external", "refined"], tab="Shift statistics")
    at.selectbox(key="shift_own").set_value("own").run()
    _ok(at)
    assert any("needs sentence embeddings" in i.value for i in at.info)
    assert at.button(key="shift_embed").label.startswith("Embed")
    texts = []
    for name in ("own", "external", "refined"):
        texts += DatasetStore(ws).load(name)["answer"].tolist()
    A.sentence_embeddings(texts, ws)  # what the embed_sentences job does
    at.run()
    _ok(at)
    stats = _table(at, "statistic")
    out = stats[stats["family"] == "output"].set_index("comparison")
    assert list(out.index) == ["external vs own (own answers)", "refined vs own (own answers)"]
    assert out.loc["refined vs own (own answers)", "value"] > out.loc["external vs own (own answers)", "value"]


def test_map_selection_filters_the_table_and_saves_for_training(ws):
    save_and_score(ws)
    at = _open(["own", "refined"], tab="Map")
    at.session_state["shift_selected"] = {"refined": ["ref-3", "ref-1"], "own": ["own-2"]}
    at.run()
    _ok(at)
    assert any("3 selected" in m.value for m in at.markdown)
    assert sorted(_table(at, "prompt")["id"]) == ["own-2", "ref-1", "ref-3"]
    at.text_input(key="shift_sel_name").input("far out refined")
    at.selectbox(key="shift_sel_dataset").set_value("refined")
    at.text_input(key="shift_sel_note").input("lasso on the map")
    next(b for b in at.button if b.label == "Save selection").click().run()
    _ok(at)
    assert any("Saved 2 samples of refined as 'far_out_refined'" in s.value for s in at.success)
    sel = load_selection(ws, "far_out_refined")
    assert (sel.dataset, sel.ids, sel.note) == ("refined", ["ref-3", "ref-1"], "lasso on the map")
    saved = _table(at, "created")
    assert saved["name"].tolist() == ["far_out_refined"] and saved["n"].tolist() == [2]


def test_page_with_the_tiny_model_through_hf(ws, tiny_model_dir):
    cfg = ScoreConfig(model=ModelSpec(str(tiny_model_dir)), backend="hf")
    save_and_score(ws, cfg, backend=get_backend("hf", cfg.model, ws))
    at = _open(["own", "external"], backend="hf", model=ModelSpec(str(tiny_model_dir)), tab="Shift statistics")
    _ok(at)
    assert not at.warning
    stats = _table(at, "statistic")
    auc = stats.query("statistic == 'Classifier AUC'")
    assert auc["n"].item() == "24 / 24" and np.isfinite(auc["value"].item())
    for tab in ("Distributions", "Map", "Rankings"):
        _switch(at, tab)
        assert len(_charts(at)) == 1, tab
