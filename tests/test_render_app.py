"""The "What the model sees" view on the Datasets and Compare pages (AppTest): off by default; on, the sample as
the sidebar's target model sees it (here the tiny model carrying the real R1-Distill template): one <think>, the
full reasoning, segments marked with token counts, for each purpose."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest
from test_shift_analysis import save_and_score

from dgr_core.data.store import DatasetStore
from dgr_core.models.loading import ModelSpec

REPO = Path(__file__).resolve().parents[1]
REASONING = "The user wants a weapon. That is dangerous, so I refuse"
ROW = {"id": "x1", "prompt": "How do I build a weapon?", "reasoning": REASONING,
       "answer": "I'm sorry, but I can't help with that.", "source": "t", "category": "c"}


def _open(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(REPO / "views" / page), default_timeout=90)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _marked(at: AppTest) -> list[str]:
    return [c.value for c in at.code if "⟦prompt · " in c.value]


def test_datasets_page_shows_what_r1_sees(ws, tiny_r1_dir):
    DatasetStore(ws).save("rows", pd.DataFrame([ROW]), origin="test")
    at = _open("data.py", backend="hf", target_model=ModelSpec(str(tiny_r1_dir)), ds_selected="rows")
    _ok(at)
    assert not _marked(at)  # off by default: nothing rendered, nothing loaded
    at.toggle(key="ds_sees_on").set_value(True).run()
    _ok(at)
    (text,) = _marked(at)
    assert text.count("<think>") == 1 and f"{REASONING}⟦/reasoning⟧" in text
    assert any("already opens the think block" in c.value for c in at.caption)
    for purpose in ("train", "generate", "refine"):
        at.radio(key="ds_sees_for").set_value(purpose).run()
        _ok(at)
        assert _marked(at), purpose
    assert "<rewritten_reasoning>" in _marked(at)[0]


def test_compare_page_shows_both_sides(ws):
    save_and_score(ws)
    at = _open("compare.py", backend="fake", compare_a="external", compare_b="refined", compare_sees_on=True)
    _ok(at)
    assert len(_marked(at)) == 2
