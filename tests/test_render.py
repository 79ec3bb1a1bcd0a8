"""The one renderer (dgr_core.render) on tokenizers that carry the real R1-Distill and Qwen3 templates.

Properties over seeded random samples: exactly one open think, the reasoning present and identical in the scored
and the trained ids, boundaries exact (or the crossing token reported), text round trip, the prompt ids equal to
what a generation run is given; and a peer check against the templates' own rendering.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from dgr_core.errors import DataError
from dgr_core.render import (
    ANSWER,
    CLOSE,
    END,
    MARKERS,
    OPEN,
    PROMPT,
    REASONING,
    RenderConfig,
    full_reply,
    generation_prompt,
    render,
    split_reply,
    template_facts,
)
from dgr_core.scoring.api import ScoreConfig
from dgr_core.train.data import IGNORE_INDEX, encode_row

WORDS = ["the", "user", "asks", "48", "+", "24", "=", "72", "bomb", "sorry", "Café", "日本語", "🙂", "$\\boxed{3}$",
         "step", "Wait,", "hmm...", "(1)", "**Answer**", "policy", "I", "can't", "help", "x^2", "-", "naïve"]
ENDINGS = ["", ".", "!", "?", ":", "...", ")", "72", "\n- item", "**"]


def _text(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    sep = [rng.choice([" ", " ", " ", "\n", "\n\n", ", "]) for _ in range(n)]
    return ("".join(w + s for w, s in zip(words, sep, strict=True)) + rng.choice(ENDINGS)).strip()


def samples(n: int = 40, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = [{"id": str(i), "prompt": _text(rng, rng.randint(1, 12)), "reasoning": _text(rng, rng.randint(1, 30)),
             "answer": _text(rng, rng.randint(1, 12))} for i in range(n)]
    rows.append({"id": "answer-only", "prompt": "Hi?", "reasoning": "", "answer": "Hello."})
    rows.append({"id": "empty-think", "prompt": "Hi?", "reasoning": "", "answer": "Hello.", "think_status": "empty"})
    return rows


@pytest.fixture(scope="module")
def r1_tok(tiny_r1_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_r1_dir)


@pytest.fixture(scope="module")
def qwen3_tok(tiny_qwen3_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen3_dir)


@pytest.fixture(scope="module")
def chatml_tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _decoded(tok, enc, seg: int) -> str:
    return tok.decode(enc.input_ids[enc.segments == seg].tolist(), skip_special_tokens=False)


# ---- what the templates do, found by rendering ------------------------------------------------------------

def test_facts_r1(r1_tok):
    facts = template_facts(r1_tok)
    assert facts.opened == "<think>\n" and facts.rest_open == ""
    assert facts.drops_reasoning and not facts.closed_in_prompt and facts.thinks
    assert facts.end_of_turn == "<｜end▁of▁sentence｜>"


def test_facts_qwen3(qwen3_tok):
    facts = template_facts(qwen3_tok)
    assert facts.opened == "" and facts.answer_prefill == "<think>\n\n</think>\n\n" and not facts.drops_reasoning
    off = template_facts(qwen3_tok, RenderConfig(thinking=False))
    assert off.closed_in_prompt and off.opened == ""


def test_facts_chatml_has_no_think(chatml_tok):
    facts = template_facts(chatml_tok)
    assert not facts.thinks and facts.answer_prefill == "" and facts.end_of_turn == "<|im_end|>"


def test_facts_come_from_the_template_not_the_name(chatml_tok, r1_tok):
    """The ChatML tokenizer given the R1 template text behaves as R1: nothing is keyed on a model name."""
    import copy

    tok = copy.deepcopy(chatml_tok)
    tok.chat_template = r1_tok.chat_template
    assert template_facts(tok).opened == "<think>\n"


# ---- properties -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["r1", "qwen3"])
def test_render_properties(family, r1_tok, qwen3_tok):
    tok = {"r1": r1_tok, "qwen3": qwen3_tok}[family]
    think_id, close_id = tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")
    cfg = ScoreConfig().render_config()
    for row in samples():
        enc = render(row, tok, cfg)
        ids = enc.input_ids
        assert int((ids == think_id).sum()) == 1, (row, enc.text)  # exactly one open think, never two
        assert int((ids == close_id).sum()) == 1
        assert enc.text.count("<think>") == 1
        # round trip: the ids decode to the text, and the text is the generation prompt + the reply
        assert tok.decode(ids.tolist(), skip_special_tokens=False) == enc.text
        head = generation_prompt(tok, [{"role": "user", "content": row["prompt"]}])
        assert enc.text.startswith(head)
        n_head = int((enc.segments == PROMPT).sum())
        assert ids[:n_head].tolist() == tok(head, add_special_tokens=False)["input_ids"]  # what generation sees
        assert np.all(np.diff(enc.segments) >= 0)  # prompt < open < reasoning < close < answer < end
        # reasoning present, boundary exact unless a token crossing it is reported
        reasoning = _decoded(tok, enc, REASONING)
        if row["reasoning"]:
            assert reasoning == row["reasoning"] or (enc.straddles and reasoning.rstrip() == row["reasoning"])
        assert _decoded(tok, enc, ANSWER) == row["answer"]
        assert _decoded(tok, enc, END) == tok.eos_token
        # the tokens trained on are the tokens scored
        ex = encode_row(row, tok, max_length=4096)
        assert ex.input_ids == ids.tolist()
        assert [lab != IGNORE_INDEX for lab in ex.labels] == (enc.segments > PROMPT).tolist()


def test_spans_cover_the_text_in_order(r1_tok):
    enc = render(samples(1)[0], r1_tok)
    assert enc.spans[0][1] == 0 and enc.spans[-1][2] == len(enc.text)
    assert all(a[2] == b[1] for a, b in zip(enc.spans, enc.spans[1:], strict=False))
    segs = [s for s, _, _ in enc.spans]
    assert segs == [PROMPT, REASONING, CLOSE, ANSWER, END]  # no OPEN piece: the prompt opened the block


def test_straddling_token_is_reported(r1_tok):
    """Qwen2's regex glues the newline of "\\n</think>" to a final full stop (`.Ċ` is one token here)."""
    row = {"prompt": "Hi", "reasoning": "I should think step by step.", "answer": "Ok"}
    enc = render(row, r1_tok)
    assert enc.straddles == 1
    assert _decoded(r1_tok, enc, REASONING) == row["reasoning"] + "\n"
    plain = render({**row, "reasoning": "I should think step by step"}, r1_tok)
    assert plain.straddles == 0 and _decoded(r1_tok, plain, REASONING) == "I should think step by step"


# ---- peer check: the templates' own rendering ---------------------------------------------------------------

def test_qwen3_matches_the_template_itself(qwen3_tok):
    for row in samples(15, seed=1):
        user = [{"role": "user", "content": row["prompt"]}]
        assistant = {"role": "assistant", "content": row["answer"], "reasoning_content": row["reasoning"]}
        native = qwen3_tok.apply_chat_template([*user, assistant], tokenize=False)
        assert render(row, qwen3_tok).text == native.rstrip("\n")


def test_r1_matches_the_template_except_the_reasoning_it_drops(r1_tok):
    """R1's template renders an assistant turn without its reasoning; ours keeps it, and is otherwise identical."""
    for row in samples(15, seed=2):
        content = f"<think>\n{row['reasoning']}\n</think>\n\n{row['answer']}"
        native = r1_tok.apply_chat_template([{"role": "user", "content": row["prompt"]},
                                             {"role": "assistant", "content": content}], tokenize=False)
        ours = render(row, r1_tok).text
        if row["reasoning"]:
            assert row["reasoning"] not in native.split("<｜Assistant｜>")[-1]  # the template drops it
        assert ours.replace(f"<think>\n{row['reasoning']}\n</think>", "") == native


def test_answer_only_rows(r1_tok, qwen3_tok, chatml_tok):
    row = {"prompt": "Hi?", "reasoning": "", "answer": "Hello."}
    # R1: the prompt opened the block, so the reply closes it (an empty think block), never opens another
    assert render(row, r1_tok).text.endswith("<｜Assistant｜><think>\n\n</think>\n\nHello.<｜end▁of▁sentence｜>")
    # Qwen3: the template's own pre-fill for an answer-only reply
    q = render(row, qwen3_tok)
    assert q.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nHello.<|im_end|>")
    assert _decoded(qwen3_tok, q, OPEN) + _decoded(qwen3_tok, q, CLOSE) == "<think>\n\n</think>\n\n"
    # ChatML: the answer alone
    assert render(row, chatml_tok).text.endswith("<|im_start|>assistant\nHello.<|im_end|>")


def test_qwen3_thinking_off(qwen3_tok):
    cfg = RenderConfig(thinking=False)
    enc = render({"prompt": "Hi?", "reasoning": "", "answer": "Hello."}, qwen3_tok, cfg)
    assert enc.text.count("<think>") == 1 and enc.text.endswith("</think>\n\nHello.<|im_end|>")
    with pytest.raises(DataError, match="second think block"):
        render({"prompt": "Hi?", "reasoning": "Let me see.", "answer": "Hello."}, qwen3_tok, cfg)


def test_s1_markers(chatml_tok):
    cfg = RenderConfig(think_open=MARKERS["s1"][0], think_close=MARKERS["s1"][1])
    row = {"prompt": "2+2?", "reasoning": "Two and two make four", "answer": "4"}
    enc = render(row, chatml_tok, cfg)
    assert enc.text.endswith("<|im_start|>assistant\n<|im_start|>think\nTwo and two make four\n"
                             "<|im_start|>answer\n4<|im_end|>")
    assert _decoded(chatml_tok, enc, REASONING) == "Two and two make four"
    assert chatml_tok.decode(enc.input_ids.tolist()) == enc.text


# ---- generation replies -------------------------------------------------------------------------------------

def test_full_reply_and_split_reply():
    assert full_reply("Okay.\n</think>\n\nHi", "<think>\n") == "<think>\nOkay.\n</think>\n\nHi"
    assert full_reply("<think>\nOkay.</think>Hi", "<think>\n") == "<think>\nOkay.</think>Hi"
    assert full_reply("Hi", "") == "Hi"
    assert split_reply("<think>\na\n</think>\n\nb") == ("a", "b", "closed")
    assert split_reply("<think>\na</think>b</think>\n\nc") == ("a</think>b", "c", "nested")
    assert split_reply("<think>\nstill thinking") == ("still thinking", "", "unclosed")
    assert split_reply("plain") == ("", "plain", "missing")
