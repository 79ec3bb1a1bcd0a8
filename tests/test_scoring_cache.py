"""The content-addressed score cache: hits, incremental re-scores, keys, crash safety."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, op_meta, score_frame
from dgr_core.scoring.cache import op_key


def frame(n=20, tag=""):
    return pd.DataFrame({
        "id": [f"s{i}" for i in range(n)],
        "prompt": [f"Question {i}{tag}: what is {i} + {i}?" for i in range(n)],
        "reasoning": [f"We add {i} and {i}." if i % 3 else "" for i in range(n)],
        "answer": [f"The answer is {2 * i}." for i in range(n)],
    })


def tiny_cfg(tiny_model_dir, **kw):
    return ScoreConfig(model=ModelSpec(str(tiny_model_dir)), chunk_size=6, **kw)


def test_cache_hit_returns_identical_arrays(ws, tiny_model_dir):
    cfg = tiny_cfg(tiny_model_dir)
    first = score_frame(ws, frame(), cfg)
    second = score_frame(ws, frame(), cfg)
    assert first.computed == 20 and second.computed == 0
    pd.testing.assert_frame_equal(first.table, second.table)
    for sid in first.ids:
        a, b = first.arrays(sid), second.arrays(sid)
        for field in ("token_ids", "logprobs", "ranks", "segments", "embedding"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_incremental_rescore_computes_only_changed_rows(ws, tiny_model_dir):
    cfg = tiny_cfg(tiny_model_dir)
    df = frame()
    base = score_frame(ws, df, cfg)
    changed = df.copy()
    changed.loc[[3, 11], "answer"] = ["A different answer.", "Another new answer."]
    again = score_frame(ws, changed, cfg)
    assert again.computed == 2
    unchanged = [i for i in range(20) if i not in (3, 11)]
    pd.testing.assert_frame_equal(base.table.iloc[unchanged].reset_index(drop=True),
                                  again.table.iloc[unchanged].reset_index(drop=True))
    assert again.table.loc[3, "nll_answer"] != base.table.loc[3, "nll_answer"]


def test_stored_logprobs_are_float16_with_offsets(ws, tiny_model_dir):
    res = score_frame(ws, frame(6), tiny_cfg(tiny_model_dir))
    chunk = next(res.store.chunks.glob("*.npz"))
    with np.load(chunk, allow_pickle=False) as npz:
        assert npz["logprobs"].dtype == np.float16
        assert npz["offsets"][-1] == len(npz["logprobs"])
    arr = res.arrays("s1")
    assert len(arr.logprobs) == res.table.loc[1, "n_tokens_total"]
    # The per-sample figure is computed in fp32; the float16 tokens agree to fp16 precision.
    assert -arr.logprobs.mean() == pytest.approx(res.table.loc[1, "nll_total"], rel=2e-3)


def test_key_includes_output_settings_but_not_speed_settings(tiny_model_dir):
    ident = {"ref": "x", "weights_hash": "w", "tokenizer_hash": "t", "backend": "hf", "dtype": "float32",
             "device_kind": "cpu"}
    base = op_key(op_meta(ident, ScoreConfig()))
    assert op_key(op_meta(ident, ScoreConfig(token_budget=123, chunk_size=5))) == base
    for change in ({"mode": "raw"}, {"layer": 3}, {"max_length": 100}):
        assert op_key(op_meta(ident, ScoreConfig(**change))) != base
    for field, value in (("backend", "vllm"), ("dtype", "bfloat16"), ("weights_hash", "w2"), ("tokenizer_hash", "t2")):
        assert op_key(op_meta({**ident, field: value}, ScoreConfig())) != base


def test_backends_never_share_entries(ws, tiny_model_dir):
    hf = score_frame(ws, frame(4), tiny_cfg(tiny_model_dir))
    fake = score_frame(ws, frame(4), ScoreConfig(backend="fake"))
    assert hf.store.key != fake.store.key and fake.computed == 4


def test_orphan_arrays_from_a_killed_write_are_ignored(ws, tiny_model_dir):
    cfg = tiny_cfg(tiny_model_dir)
    res = score_frame(ws, frame(6), cfg)
    # A job killed between the two writes of a chunk leaves an .npz without its .parquet, and temp files.
    (res.store.chunks / "deadbeefdeadbeef.npz").write_bytes(b"partial")
    (res.store.chunks / ".x.parquet.123.tmp").write_bytes(b"partial")
    again = score_frame(ws, frame(6), cfg)
    assert again.computed == 0
    pd.testing.assert_frame_equal(res.table, again.table)


def test_duplicate_rows_are_scored_once(ws, tiny_model_dir):
    df = pd.concat([frame(3), frame(3).assign(id=["d0", "d1", "d2"])], ignore_index=True)
    res = score_frame(ws, df, tiny_cfg(tiny_model_dir))
    assert res.computed == 3 and len(res.table) == 6
    assert res.table.loc[0, "nll_total"] == res.table.loc[3, "nll_total"]
