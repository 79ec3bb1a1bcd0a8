"""The Compare page in AppTest, against the real score cache: an empty state; two datasets paired by parent_id,
both responses with every token coloured and its log-prob on hover, reasoning and answer marked, the per-sample
figures, the word diff, stepping by ΔNLL or category, the HTML export; unscored sides shown uncoloured with a
score button; with the fake and the tiny (hf) backends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_compare import MULTIBYTE, parse
from test_shift_analysis import frames, save_and_score

from dgr_core.backends.base import get_backend
from dgr_core.data.store import DatasetStore
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, score_dataset

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "compare.py")


def _open(a: str = "external", b: str = "refined", backend: str = "fake", model: ModelSpec | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = backend
    if model is not None:
        at.session_state["target_model"] = model
    at.session_state["compare_a"], at.session_state["compare_b"] = a, b
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _token_blocks(at: AppTest) -> list:
    return [parse(h.proto.body) for h in at.get("html") if "dgr-tokens" in h.proto.body]


def _shown_ids(at: AppTest) -> list[str]:
    return re.findall(r"`([^`]+)`", " ".join(m.value for m in at.markdown if " · `" in m.value))


def test_empty_workspace_says_what_to_do(ws):
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = "fake"
    at.run()
    _ok(at)
    assert any("No datasets yet" in i.value for i in at.info)


def test_pairs_shown_side_by_side_largest_delta_first_and_stepped(ws):
    sets = save_and_score(ws)
    at = _open()
    _ok(at)
    assert any("24 pairs, matched by parent_id" in c.value for c in at.caption)
    deltas = sets["refined"].nll() - sets["external"].nll()  # row i of both answers prompt i (parent_id)
    first = int(deltas.argmax())
    assert _shown_ids(at) == [f"ext-{first}", f"ref-{first}"]
    left, right = _token_blocks(at)
    arrays = sets["refined"].result.arrays(f"ref-{first}")
    assert sum(s["n"] for s in right.spans) == len(arrays.logprobs)
    assert [s["lp"] for s in right.spans] == pytest.approx(arrays.logprobs.astype(float).tolist(), abs=1e-4)
    assert all("log p" in s["title"] and "rank" in s["title"] for s in right.spans)
    assert left.labels == right.labels == ["reasoning", "answer"]
    figures = at.dataframe[0].value
    assert figures.loc["total", "ΔNLL (B − A)"] == pytest.approx(deltas[first])
    assert any("% of the answer unchanged" in c.value for c in at.caption)
    diff = next(h.proto.body for h in at.get("html") if "dgr-diff" in h.proto.body)
    assert "<del" in diff and "<ins" in diff
    # Stepping: next goes to the second-largest ΔNLL, previous back; the picker jumps anywhere.
    order = [int(i) for i in (-deltas).argsort(kind="stable")]
    at.button(key="compare_next").click().run()
    assert _shown_ids(at) == [f"ext-{order[1]}", f"ref-{order[1]}"]
    at.button(key="compare_prev").click().run()
    assert _shown_ids(at)[0] == f"ext-{order[0]}" and at.button(key="compare_prev").disabled
    at.selectbox(key="compare_pos").set_value(23).run()
    assert _shown_ids(at)[0] == f"ext-{order[23]}" and at.button(key="compare_next").disabled
    _ok(at)


def test_category_order_filter_diff_part_and_export(ws):
    save_and_score(ws)
    at = _open()
    at.selectbox(key="compare_order").set_value("category").run()
    assert at.selectbox(key="compare_pos").value == 0  # a new order starts at its first pair
    labels = at.selectbox(key="compare_pos").options
    cats = [lab.split(" · ")[1] for lab in labels]
    assert cats == sorted(cats)
    at.selectbox(key="compare_category").set_value("logic").run()
    assert len(at.selectbox(key="compare_pos").options) == 8
    at.radio(key="compare_diff_part").set_value("reasoning").run()
    _ok(at)
    assert any("% of the reasoning unchanged" in c.value for c in at.caption)
    downloads = at.get("download_button")
    assert len(downloads) == 2
    assert at.get("plotly_chart")  # the slide image preview and the segment bars


def test_unscored_side_is_shown_uncoloured_with_a_score_button(ws):
    save_and_score(ws)
    extra = frames()["refined"].assign(id=lambda d: d["id"] + "-v2", answer="A new answer nobody scored.")
    DatasetStore(ws).save("refined-v2", extra, origin="test")
    at = _open("external", "refined-v2")
    _ok(at)
    assert any("Not scored with this model and settings: refined-v2" in w.value for w in at.warning)
    assert at.button(key="compare_score")
    left, right = _token_blocks(at)
    assert all(s["title"] != "not scored" for s in left.spans)
    assert all(s["title"] == "not scored" for s in right.spans) and right.labels == ["reasoning", "answer"]
    assert at.dataframe[0].value["NLL B"].isna().all()


def test_page_with_the_tiny_model_shows_multibyte_tokens(ws, tiny_model_dir):
    store = DatasetStore(ws)
    base = frames(4)
    base["refined"]["answer"] = [f"{MULTIBYTE} {i}" for i in range(4)]
    for name in ("external", "refined"):
        store.save(name, base[name], origin="test")
    cfg = ScoreConfig(model=ModelSpec(str(tiny_model_dir)), backend="hf")
    backend = get_backend("hf", cfg.model, ws)
    for name in ("external", "refined"):
        score_dataset(ws, name, cfg, backend=backend)
    at = _open(backend="hf", model=ModelSpec(str(tiny_model_dir)))
    _ok(at)
    assert not at.warning
    _, right = _token_blocks(at)
    assert MULTIBYTE in "".join(s["text"] for s in right.spans)
    assert any(s["n"] > 1 for s in right.spans)  # a character split over byte-level tokens, shown once
