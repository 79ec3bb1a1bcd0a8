"""The new renderer is byte-identical to the one it replaced on templates without think support (ChatML, the
embedded SmolLM2), so the demo's scores and SFT examples do not change. `_old_render` is a frozen copy of the
previous `dgr_core.scoring.segments.render` (commit f61b940); it also shows the double `<think>` it wrote for
DeepSeek-R1-Distill, the bug the new renderer fixes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dgr_core.data.think import split_think
from dgr_core.render import RenderConfig, render

REPO = Path(__file__).resolve().parents[1]
_PH = "\u2063DGR\u2063"


# ---- the previous renderer, frozen --------------------------------------------------------------------------

@dataclass(frozen=True)
class _OldConfig:
    mode: str = "chat"
    think_open: str = "<think>\n"
    think_close: str = "\n</think>\n\n"
    max_length: int = 4096


def _old_frame(tokenizer, prompt):
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": _PH}], tokenize=False)
    tail = full.split(_PH, 1)[1] if _PH in full else ""
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in tail:
        tail = tail[: tail.index(eos) + len(eos)]
    return head, tail.rstrip("\n ")


def _old_render(row, tokenizer, cfg=_OldConfig()):
    prompt, reasoning, answer = (str(row.get(k) or "").strip() for k in ("prompt", "reasoning", "answer"))
    think = bool(reasoning) or row.get("think_status") == "empty"
    pieces = [(1, cfg.think_open), (2, reasoning), (3, cfg.think_close), (4, answer)] if think else [(4, answer)]
    if cfg.mode == "chat":
        head, tail = _old_frame(tokenizer, prompt)
    else:
        head, tail = prompt + "\n\n", (getattr(tokenizer, "eos_token", None) or "")
    text, bounds = "", []
    for seg, piece in [(0, head), *pieces, (5, tail)]:
        if piece:
            bounds.append((len(text), seg))
            text += piece
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = np.array([s for s, _ in enc["offset_mapping"]], dtype=np.int64)
    edges = np.array([b for b, _ in bounds], dtype=np.int64)
    segs = np.array([s for _, s in bounds], dtype=np.int8)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    return ids[: cfg.max_length], segs[np.searchsorted(edges, starts, side="right") - 1][: cfg.max_length], text


# ---- rows ---------------------------------------------------------------------------------------------------

def _rows(shared_data: Path, n: int = 60) -> list[dict]:
    raw = json.loads((shared_data / "STAR-1" / "data" / "STAR-1.json").read_text(encoding="utf-8"))[:n]
    rows = []
    for r in raw:
        reasoning, answer, _ = split_think(r.get("response") or "")
        row = {"prompt": r.get("question"), "reasoning": reasoning, "answer": answer}
        rows += [row, {**row, "reasoning": ""}, {**row, "reasoning": "", "think_status": "empty"}]
    return rows


def _assert_identical(rows, tok):
    for mode in ("chat", "raw"):
        for row in rows:
            ids, segs, text = _old_render(row, tok, _OldConfig(mode=mode))
            enc = render(row, tok, RenderConfig(mode=mode))
            assert enc.text == text
            assert enc.input_ids.tolist() == ids.tolist()
            assert enc.segments.tolist() == segs.tolist()


def test_identical_on_tiny_chatml(tiny_model_dir, shared_data):
    from transformers import AutoTokenizer

    _assert_identical(_rows(shared_data), AutoTokenizer.from_pretrained(tiny_model_dir))


def test_identical_on_fake_tokenizer(shared_data):
    from dgr_core.backends.fake import FakeTokenizer

    _assert_identical(_rows(shared_data, 20), FakeTokenizer())


def test_identical_on_the_embedded_smollm2(demo_ws, shared_data):
    """The real demo tokenizer (converted folder), on STAR-1 rows and the demo datasets."""
    from transformers import AutoTokenizer

    from dgr_core.data.demo import DEMO_EXTERNAL, DEMO_GSM8K
    from dgr_core.data.store import DatasetStore
    from dgr_core.models.embedded import READY_MARKER, converted_folder

    folder = converted_folder(demo_ws)
    if not (folder / READY_MARKER).is_file():
        pytest.skip("the embedded model is not converted (run `dgr prepare`)")
    tok = AutoTokenizer.from_pretrained(folder)
    store = DatasetStore(demo_ws)
    demo = [r for name in (DEMO_EXTERNAL, DEMO_GSM8K) for r in store.load(name).head(40).to_dict("records")]
    _assert_identical(_rows(shared_data) + demo, tok)


def test_old_renderer_wrote_two_think_tags_for_r1(tiny_r1_dir):
    """The bug this renderer fixes: R1-Distill's generation prompt opens <think>, the old code opened another."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_r1_dir)
    row = {"prompt": "Hi", "reasoning": "Let me think", "answer": "Hello"}
    assert _old_render(row, tok)[2].count("<think>") == 2
    assert render(row, tok).text.count("<think>") == 1
