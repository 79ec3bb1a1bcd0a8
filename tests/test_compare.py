"""Side-by-side comparison core: pairing rows that answer one prompt, ordering pairs, the per-token surprisal HTML
(each displayed token carries the log-prob of exactly the token(s) it shows, multi-byte characters included), the
word diff, and the self-contained export."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from dgr_core import compare as C
from dgr_core.backends.base import get_backend
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, score_dataset
from dgr_core.scoring.segments import ANSWER, CLOSE, END, OPEN, REASONING
from dgr_core.shift import analysis as A

MULTIBYTE = "Café naïve — 日本語 🙂 ≤ ∑ done"


class Spans(HTMLParser):
    """Reads back the token spans of `token_html`: (data-i, data-n, data-lp, title, text) and segment labels."""

    def __init__(self):
        super().__init__()
        self.spans: list[dict] = []
        self.labels: list[str] = []
        self._cur: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "data-i" in a:
            self._cur = {"i": int(a["data-i"]), "n": int(a["data-n"]), "lp": float(a["data-lp"]),
                         "title": a["title"], "text": ""}
        elif tag == "span" and "data-segment" in a:
            self.labels.append(a["data-segment"])

    def handle_data(self, data):
        if self._cur is not None:
            self._cur["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._cur is not None:
            self.spans.append(self._cur)
            self._cur = None


def parse(html_text: str) -> Spans:
    p = Spans()
    p.feed(html_text)
    return p


# --- pairing -----------------------------------------------------------------------------------------------------


def _df(ids, prompts, **extra) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "prompt": prompts, "reasoning": "", "answer": "x", **extra})


def test_pairs_by_parent_id_in_either_direction_then_shared_parent_then_prompt():
    orig = _df(["a", "b", "c"], ["p1", "p2", "p3"], category=["x", "y", "x"])
    refined = _df(["r-c", "r-a"], ["changed", "changed too"], parent_id=["c", "a"])
    pairs = C.pair_rows(orig, refined)
    assert pairs.attrs["paired_by"] == "parent_id"
    assert list(zip(pairs["id_a"], pairs["id_b"], strict=True)) == [("a", "r-a"), ("c", "r-c")]
    assert pairs["category"].tolist() == ["x", "x"]
    back = C.pair_rows(refined, orig)
    assert list(zip(back["id_a"], back["id_b"], strict=True)) == [("r-c", "c"), ("r-a", "a")]
    own = _df(["s-a", "s-b"], ["p1", "p2"], parent_id=["a", "b"])
    assert C.pair_rows(refined, own).attrs["paired_by"] == "shared parent_id"
    # No parent link: prompt text with whitespace normalized; repeats pair in order.
    x = _df(["x1", "x2", "x3"], ["  Same\nprompt ", "same prompt", "Same prompt"])
    y = _df(["y1", "y2"], ["Same prompt", "Same  prompt"])
    pairs = C.pair_rows(x, y)
    assert pairs.attrs["paired_by"] == "prompt"
    assert list(zip(pairs["id_a"], pairs["id_b"], strict=True)) == [("x1", "y1"), ("x3", "y2")]
    assert C.pair_rows(x, _df(["z"], ["other"])).empty
    with pytest.raises(DataError, match="prompt"):
        C.pair_rows(x, pd.DataFrame({"id": ["q"]}))


def _scores(ids, nll_total, nll_answer=None) -> pd.DataFrame:
    out = pd.DataFrame({"id": ids})
    for seg in C.SEGMENTS:
        out[f"nll_{seg}"] = nll_answer if seg == "answer" and nll_answer is not None else nll_total
        out[f"n_tokens_{seg}"] = 10
    out["nll_reasoning"] = np.nan  # no reasoning tokens
    return out


def test_pair_table_and_stepping_order():
    a = _df(["a0", "a1", "a2", "a3"], ["p0", "p1", "p2", "p3"], category=["m", "s", "m", "s"])
    b = _df(["b0", "b1", "b2", "b3"], ["p0", "p1", "p2", "p3"])
    table = C.pair_table(C.pair_rows(a, b), _scores(["a0", "a1", "a2", "a3"], [1.0, 1.0, 1.0, 1.0]),
                         _scores(["b0", "b1", "b2", "b3"], [1.5, 3.0, 0.5, 2.0]))
    np.testing.assert_allclose(table["delta_nll_total"], [0.5, 2.0, -0.5, 1.0])
    assert table["delta_nll_reasoning"].isna().all()
    assert C.order_pairs(table, "delta")["id_b"].tolist() == ["b1", "b3", "b0", "b2"]
    assert C.order_pairs(table, "category")["id_b"].tolist() == ["b0", "b2", "b1", "b3"]
    assert C.order_pairs(table, "dataset")["id_b"].tolist() == ["b0", "b1", "b2", "b3"]
    assert C.order_pairs(table, "delta", category="s")["id_b"].tolist() == ["b1", "b3"]
    assert C.pair_categories(table) == ["m", "s"]
    labels = C.pair_labels(C.order_pairs(table, "delta"))
    assert labels[0] == "1. a1 ↔ b1 · s · ΔNLL +2.000" and len(labels) == 4
    unscored = C.pair_table(C.pair_rows(a, b), None, None)
    assert unscored["delta_nll_total"].isna().all() and len(C.order_pairs(unscored)) == 4
    assert "ΔNLL" not in C.pair_labels(unscored)[0]
    figures = C.sample_figures(table.iloc[1])
    assert figures.loc["total", "ΔNLL (B − A)"] == 2.0 and figures.loc["answer", "tokens B"] == 10


# --- token colouring ---------------------------------------------------------------------------------------------


def test_partial_characters_join_the_token_that_completes_them():
    pieces = ["A", "", "", "é", " b", "", ""]
    lps = np.array([-0.5, -1.0, -2.0, -0.25, -3.0, -0.1, -0.2])
    ranks = np.arange(1, 8)
    segs = np.array([REASONING, REASONING, REASONING, REASONING, ANSWER, ANSWER, ANSWER])
    spans = parse(C.token_html(pieces, lps, ranks, segs)).spans
    assert [(s["i"], s["n"], s["text"]) for s in spans] == [(0, 1, "A"), (1, 3, "é"), (4, 1, " b"), (5, 2, "·")]
    assert spans[1]["lp"] == pytest.approx(-3.25)  # the whole character's log-probability
    assert "-1.000 + -2.000 + -0.250 = -3.250" in spans[1]["title"] and "rank 2, 3, 4" in spans[1]["title"]
    groups = C.token_groups(C.TokenView(pieces, lps, ranks, segs))
    assert [(g.first, g.n, g.text, g.segment) for g in groups] == [
        (0, 1, "A", REASONING), (1, 3, "é", REASONING), (4, 1, " b", ANSWER), (5, 2, "", ANSWER)]
    assert sum(g.logprob for g in groups) == pytest.approx(lps.sum())  # no token's score is dropped


def test_token_html_escapes_marks_segments_and_checks_lengths():
    pieces = ["<think>\n", "a<b>&", "\n</think>\n\n", "ok", "<|im_end|>"]
    segs = np.array([OPEN, REASONING, CLOSE, ANSWER, END])
    html_text = C.token_html(pieces, np.array([-0.1, -2.0, -0.1, np.nan, -0.3]), np.ones(5), segs)
    assert "<b>" not in html_text and "a&lt;b&gt;&amp;" in html_text and "&lt;think&gt;" in html_text
    parsed = parse(html_text)
    assert parsed.labels == ["reasoning", "answer"]
    assert "".join(s["text"] for s in parsed.spans) == "".join(pieces)
    assert parsed.spans[3]["title"] == "not scored"
    with pytest.raises(ValueError, match="differ in length"):
        C.token_html(pieces, np.zeros(4), np.ones(5), segs)
    assert C.surprisal_color(0.0) != C.surprisal_color(5.0) != C.surprisal_color(C.SURPRISAL_MAX)
    assert C.surprisal_color(float("nan")) == "transparent"
    assert C.surprisal_color(50.0) == C.surprisal_color(C.SURPRISAL_MAX)


@pytest.fixture(scope="module")
def tiny_scored(tiny_model_dir, tmp_path_factory):
    """One row with multi-byte characters in reasoning and answer, scored by the tiny model (hf backend)."""
    from dgr_core.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("cmp-ws"))
    row = {"id": "mb", "prompt": "Say something with accents", "reasoning": f"Think: {MULTIBYTE}",
           "answer": f"Answer — {MULTIBYTE}", "source": "t", "category": "x"}
    DatasetStore(ws).save("mb", pd.DataFrame([row]), origin="test")
    cfg = ScoreConfig(model=ModelSpec(str(tiny_model_dir)), backend="hf", max_length=512)
    score_dataset(ws, "mb", cfg, backend=get_backend("hf", cfg.model, ws))
    handle = A.model_handle(cfg.model, "hf", ws)
    return row, A.load_scored_set(ws, "mb", cfg, handle), handle, cfg


def test_each_token_shows_its_own_cached_log_prob_with_multibyte_characters(tiny_scored):
    row, scored, handle, cfg = tiny_scored
    arrays = scored.result.arrays("mb")
    view = C.token_view(row, arrays, handle.tokenizer, cfg.render_config())
    tok = handle.tokenizer
    np.testing.assert_array_equal(C.response_ids(row, tok, cfg.render_config()), arrays.token_ids)
    parsed = parse(C.token_html(view.pieces, view.logprobs, view.ranks, view.segments))
    assert any(s["n"] > 1 for s in parsed.spans), "the tiny tokenizer should split some character over tokens"
    covered = []
    for s in parsed.spans:
        ids = arrays.token_ids[s["i"]: s["i"] + s["n"]]
        # The text shown is exactly what the cached token ids decode to, and its number is their log-prob.
        assert s["text"] == (tok.decode(ids) or "·")
        assert s["lp"] == pytest.approx(float(np.sum(arrays.logprobs[s["i"]: s["i"] + s["n"]], dtype=np.float64)),
                                        abs=1e-4)
        assert f"rank {', '.join(str(int(r)) for r in arrays.ranks[s['i']: s['i'] + s['n']])}" in s["title"]
        covered += range(s["i"], s["i"] + s["n"])
    assert covered == list(range(len(arrays.logprobs)))  # every scored token shown exactly once, in order
    shown = "".join(s["text"] for s in parsed.spans)
    assert shown.count(MULTIBYTE) == 2 and "\ufffd" not in shown
    for ch in "é日本語🙂∑":
        spans = [s for s in parsed.spans if ch in s["text"]]
        assert spans and all(math.isfinite(s["lp"]) for s in spans)
    assert parsed.labels == ["reasoning", "answer"]
    # The segment of each displayed token is the one the scorer labelled (reasoning text under "reasoning").
    reasoning = "".join(g.text for g in C.token_groups(view) if g.segment == REASONING)
    assert reasoning == row["reasoning"]


def test_blockwise_token_pieces_equal_the_exact_ones(tiny_scored):
    row, scored, handle, _ = tiny_scored
    ids = scored.result.arrays("mb").token_ids
    from dgr_core.scoring.segments import token_pieces

    assert C.fast_token_pieces(handle.tokenizer, ids, block=7) == token_pieces(handle.tokenizer, ids)


def test_views_of_scores_from_other_text_are_refused_and_unscored_rows_still_show(tiny_scored):
    row, scored, handle, cfg = tiny_scored
    with pytest.raises(DataError, match="other settings or text"):
        C.token_view({**row, "answer": "short"}, scored.result.arrays("mb"), handle.tokenizer, cfg.render_config())
    view = C.unscored_view({**row, "answer": "short"}, handle.tokenizer, cfg.render_config())
    assert np.isnan(view.logprobs).all() and set(view.segments.tolist()) >= {REASONING, ANSWER}
    assert parse(C.token_html(view.pieces, view.logprobs, view.ranks, view.segments)).spans[0]["title"] == \
        "not scored"


# --- word diff and export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [("the cat sat on the mat", "the dog sat on a mat"), ("", "new text"),
                                      ("same\n\ntext", "same\n\ntext"), ("日本語 テキスト", "日本語 text <b>")])
def test_word_diff_rebuilds_both_sides(a, b):
    ops = C.word_diff(a, b)
    assert "".join(t for op, t in ops if op != "insert") == a
    assert "".join(t for op, t in ops if op != "delete") == b
    assert (C.diff_ratio(ops) == 1.0) == (a == b)
    assert "<b>" not in C.diff_html(ops)


def test_word_diff_marks_changed_words():
    ops = C.word_diff("the cat sat", "the dog sat")
    assert ("delete", "cat") in ops and ("insert", "dog") in ops
    assert 0 < C.diff_ratio(ops) < 1 and C.diff_ratio(C.word_diff("abc", "xyz")) == 0.0
    html_text = C.diff_html(ops)
    assert "<del" in html_text and ">cat</del>" in html_text and ">dog</ins>" in html_text


def test_comparison_export_is_one_self_contained_document(tiny_scored):
    row, scored, handle, cfg = tiny_scored
    view = C.token_view(row, scored.result.arrays("mb"), handle.tokenizer, cfg.render_config())
    other = {**row, "id": "mb/2 <x>", "answer": "Plain."}
    pair = pd.Series({"prompt": "Say <something>", "nll_total_a": 2.0, "nll_total_b": 2.5,
                      "delta_nll_total": 0.5, "n_tokens_total_a": 40, "n_tokens_total_b": 12})
    diff = C.diff_html(C.word_diff(row["answer"], other["answer"]))
    doc = C.comparison_document(("orig", "refined"), (row, other), (view, C.plain_view("Plain.")), pair,
                                diff=diff, model="tiny")
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert not re.search(r"<script|<link|src=|@import|url\(", doc, re.I)  # nothing to fetch, nothing to run
    assert "Say &lt;something&gt;" in doc and "mb/2 &lt;x&gt;" in doc and MULTIBYTE in doc
    assert "total: ΔNLL (B − A)" in doc and "Word diff" in doc and "<code>tiny</code>" in doc
    assert len(parse(doc).spans) == len(C.token_groups(view)) + 1
    assert C.export_stats(C.sample_figures(pair)) == {
        "total: NLL A": 2.0, "total: NLL B": 2.5, "total: ΔNLL (B − A)": 0.5, "total: tokens A": 40,
        "total: tokens B": 12}
    assert C.export_name((row, other), "html") == "compare-mb-mb_2_x_.html"
