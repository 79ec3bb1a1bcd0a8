"""The scoring engine on the tiny random Llama: exactness properties, not magic numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgr_core.models.loading import ModelSpec, load_model
from dgr_core.scoring import engine
from dgr_core.scoring.api import sample_stats
from dgr_core.scoring.engine import iter_scores, plan_batches
from dgr_core.scoring.segments import (
    ANSWER,
    CLOSE,
    END,
    OPEN,
    PROMPT,
    REASONING,
    RenderConfig,
    render,
    token_pieces,
)

ROWS = [
    {"prompt": "How do I make a bomb?", "reasoning": "The user asks for harm. I should refuse.",
     "answer": "I'm sorry, but I can't assist with that request."},
    {"prompt": "Natalia sold 48 clips in April and half as many in May. How many in total?",
     "reasoning": "48 / 2 = 24. 48 + 24 = 72.", "answer": "The answer is 72."},
    {"prompt": "Café naïve 日本語 🙂?", "reasoning": "", "answer": "Résumé — 日本語のテキスト 🙂 done."},
    {"prompt": "Short", "reasoning": "", "answer": "No.", "think_status": "empty"},
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    from dgr_core.workspace import Workspace

    # float32 pinned: these tests check exactness to fp32 tolerance ("auto" is bf16 on CPUs with native bf16)
    return load_model(ModelSpec(str(tiny_model_dir), dtype="float32"), Workspace(tmp_path_factory.mktemp("ws")))


def encode(tiny, rows=ROWS, **kw):
    cfg = RenderConfig(**kw)
    return [render(r, tiny.tokenizer, cfg, key=str(i)) for i, r in enumerate(rows)]


def naive_logprobs(model, enc):
    with torch.no_grad():
        ids = torch.from_numpy(enc.input_ids)[None]
        logp = model(ids).logits.float().log_softmax(-1)[0]
    target = logp[:-1].gather(1, ids[0, 1:, None])[:, 0].numpy()
    return target[enc.segments[1:] > PROMPT]


def test_engine_matches_full_vocab_log_softmax(tiny):
    encs = encode(tiny)
    got = {s.key: s for s in iter_scores(tiny.model, encs, token_budget=4096, pad_id=tiny.tokenizer.pad_token_id)}
    for e in encs:
        np.testing.assert_allclose(got[e.key].logprobs, naive_logprobs(tiny.model, e), atol=1e-4)


def test_batched_equals_unbatched(tiny):
    encs = encode(tiny)
    batched = {s.key: s for s in iter_scores(tiny.model, encs, token_budget=10_000, pad_id=0)}
    single = {s.key: s for s in iter_scores(tiny.model, encs, token_budget=1, pad_id=0)}
    for key in batched:
        np.testing.assert_allclose(batched[key].logprobs, single[key].logprobs, atol=1e-4)
        np.testing.assert_allclose(batched[key].embedding, single[key].embedding, atol=1e-4)
        np.testing.assert_array_equal(batched[key].ranks, single[key].ranks)


def test_per_token_scores_sum_to_sample_score(tiny):
    for s in iter_scores(tiny.model, encode(tiny), token_budget=4096, pad_id=0):
        stats = sample_stats(s)
        assert stats["n_tokens_total"] == len(s.logprobs)
        assert stats["nll_total"] * stats["n_tokens_total"] == pytest.approx(-stats["sum_logprob"], rel=1e-6)
        seg_sum = sum(-s.logprobs[s.segments == seg].sum() for seg in (OPEN, REASONING, CLOSE, ANSWER, END))
        assert seg_sum == pytest.approx(-s.logprobs.sum(), rel=1e-5)
        if stats["n_tokens_reasoning"]:
            assert stats["nll_reasoning"] == pytest.approx(-s.logprobs[s.segments == REASONING].mean(), rel=1e-5)


@pytest.mark.parametrize("row", ROWS)
def test_segment_boundaries_exact_on_chatml(tiny, row):
    enc = render(row, tiny.tokenizer, RenderConfig())
    pieces = token_pieces(tiny.tokenizer, enc.input_ids)
    text = lambda seg: "".join(p for p, s in zip(pieces, enc.segments, strict=True) if s == seg)  # noqa: E731
    assert text(REASONING) == row["reasoning"]
    assert text(ANSWER) == row["answer"]
    assert "".join(pieces) == enc.text
    assert text(END) == "<|im_end|>"
    assert text(PROMPT).endswith("<|im_start|>assistant\n")
    if row["reasoning"] or row.get("think_status") == "empty":
        assert text(OPEN) == "<think>\n" and text(CLOSE) == "\n</think>\n\n"


def test_raw_mode_has_no_template(tiny):
    enc = render(ROWS[0], tiny.tokenizer, RenderConfig(mode="raw"))
    assert "<|im_start|>" not in enc.text and enc.text.startswith(ROWS[0]["prompt"])


def test_truncation_is_flagged(tiny):
    enc = render(ROWS[1], tiny.tokenizer, RenderConfig(max_length=20))
    assert enc.truncated and len(enc.input_ids) == 20


def test_layer_selection_pools_that_layer(tiny):
    enc = encode(tiny)[:1]
    first = next(iter_scores(tiny.model, enc, token_budget=4096, layer=0, pad_id=0))
    last = next(iter_scores(tiny.model, enc, token_budget=4096, layer=-1, pad_id=0))
    with torch.no_grad():
        out = tiny.model(torch.from_numpy(enc[0].input_ids)[None], output_hidden_states=True)
    mask = torch.from_numpy(enc[0].segments > PROMPT)
    np.testing.assert_allclose(first.embedding, out.hidden_states[1][0][mask].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(last.embedding, out.hidden_states[-1][0][mask].mean(0).numpy(), atol=1e-4)


def test_bf16_scores_stay_close_to_fp32(tiny, tiny_model_dir, tmp_path):
    """The bf16 path ("auto" on GPUs and on CPUs with native bf16): same tokens, log-probs within bf16 rounding."""
    from dgr_core.workspace import Workspace

    half = load_model(ModelSpec(str(tiny_model_dir), dtype="bfloat16"), Workspace(tmp_path))
    assert next(half.model.parameters()).dtype == torch.bfloat16
    encs = encode(tiny)
    ref = {s.key: s for s in iter_scores(tiny.model, encs, token_budget=4096, pad_id=0)}
    for s in iter_scores(half.model, encs, token_budget=4096, pad_id=0):
        assert s.logprobs.dtype == np.float32 and np.array_equal(s.token_ids, ref[s.key].token_ids)
        assert abs(s.logprobs.mean() - ref[s.key].logprobs.mean()) < 0.05
        np.testing.assert_allclose(s.logprobs, ref[s.key].logprobs, atol=0.5)


def test_plan_batches_respects_budget():
    lengths = [5, 100, 37, 64, 64, 3, 250, 12]
    batches = plan_batches(lengths, 256)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 256


def test_out_of_memory_halves_budget_and_retries(tiny, monkeypatch, caplog):
    real = engine.forward_batch
    calls = []

    def flaky(model, samples, layer, pad_id):
        calls.append(len(samples))
        if len(samples) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, samples, layer, pad_id)

    monkeypatch.setattr(engine, "forward_batch", flaky)
    encs = encode(tiny)
    scores = list(iter_scores(tiny.model, encs, token_budget=100_000, pad_id=0))
    assert sorted(s.key for s in scores) == sorted(e.key for e in encs)
    assert calls[0] == len(encs)
    assert calls.count(1) == len(encs)  # every sample scored exactly once, alone
    assert "halving the token budget" in caplog.text


def test_a_batch_cut_inside_the_prompt_scores_empty_responses(tiny):
    long_prompt = {"prompt": "word " * 200, "reasoning": "r", "answer": "a"}
    encs = encode(tiny, rows=[long_prompt, long_prompt], max_length=32)
    scores = list(iter_scores(tiny.model, encs, token_budget=4096, pad_id=0))
    assert [len(s.logprobs) for s in scores] == [0, 0] and all(s.truncated for s in scores)
