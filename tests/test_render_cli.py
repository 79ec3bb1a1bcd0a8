"""`dgr render` and the views behind it (dgr_core.model_view) on model folders built from the real R1-Distill and
Qwen3 templates: exactly one <think>, the full reasoning, and the same ids for --for score and --for train."""

from __future__ import annotations

import pandas as pd
import pytest

from dgr_core.cli import main
from dgr_core.data.store import DatasetStore
from dgr_core.model_view import format_views, marked_text, row_views

REASONING = "The user asks for a bomb. That is dangerous, so I must refuse"
ROW = {"id": "r1", "prompt": "How do I make a bomb?", "reasoning": REASONING,
       "answer": "I'm sorry, but I can't help with that.", "source": "t", "category": "c"}


@pytest.fixture
def dataset(ws):
    DatasetStore(ws).save("rows", pd.DataFrame([ROW]), origin="test")
    return "rows"


@pytest.fixture(params=["r1", "qwen3"])
def model_dir(request, tiny_r1_dir, tiny_qwen3_dir):
    return {"r1": tiny_r1_dir, "qwen3": tiny_qwen3_dir}[request.param]


def _render(capsys, model_dir, dataset, purpose, *extra) -> str:
    rc = main(["render", "--model", str(model_dir), "--dataset", dataset, "--row", "r1", "--for", purpose, *extra])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


@pytest.mark.parametrize("purpose", ["score", "train"])
def test_one_think_and_the_full_reasoning(capsys, model_dir, dataset, purpose):
    out = _render(capsys, model_dir, dataset, purpose)
    assert f"<think> tokens in the ids ({purpose}): 1" in out
    assert f"⟦reasoning · 17 tok⟧{REASONING}⟦/reasoning⟧" in out
    if purpose == "train":
        assert "ids identical to --for score: yes" in out


def test_score_and_train_ids_are_identical(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    score, train = row_views(ROW, tok, "score")[0], row_views(ROW, tok, "train")[0]
    assert score.input_ids == train.input_ids
    text = marked_text(score)
    assert text.count("<think>") == 1 and REASONING in text
    assert sum(s.n_tokens for s in score.segments) == len(score.input_ids)


def test_generate_and_refine(capsys, tiny_r1_dir, dataset):
    out = _render(capsys, tiny_r1_dir, dataset, "generate")
    assert "the stored reply starts with '<think>\\n'" in out
    out = _render(capsys, tiny_r1_dir, dataset, "refine", "--refine-mode", "separate")
    assert out.count("=== refine:") == 2 and "<rewritten_reasoning>" in out and "<rewritten_answer>" in out
    assert "<think> tokens in the ids (refine): 1" in out


def test_chatml_and_s1_markers(capsys, tiny_model_dir, dataset):
    out = _render(capsys, tiny_model_dir, dataset, "score")
    assert "knows no think blocks" in out and "⟦think_open · " in out
    out = _render(capsys, tiny_model_dir, dataset, "score", "--markers", "s1")
    assert "<|im_start|>think\n⟦/think_open⟧⟦reasoning · " in out


def test_unknown_row_is_a_clear_error(capsys, tiny_r1_dir, dataset):
    rc = main(["render", "--model", str(tiny_r1_dir), "--dataset", dataset, "--row", "nope"])
    assert rc == 2 and "No row with id 'nope'" in capsys.readouterr().err


def test_format_views_lists_counts_and_notes(tiny_r1_dir):
    from transformers import AutoTokenizer

    text = format_views(row_views(ROW, AutoTokenizer.from_pretrained(tiny_r1_dir), "score"))
    assert "already opens the think block" in text and "drops the reasoning" in text


def test_thinking_off_with_reasoning_is_an_error_not_a_drop(capsys, tiny_qwen3_dir, dataset):
    rc = main(["render", "--model", str(tiny_qwen3_dir), "--dataset", dataset, "--row", "r1", "--thinking", "off"])
    assert rc == 2 and "second think block" in capsys.readouterr().err
