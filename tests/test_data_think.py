"""split_think / join_think on every marker form, and chat-template parsing of single `text` fields."""

from __future__ import annotations

import pytest

from dgr_core.data.schema import THINK_CLOSED, THINK_EMPTY, THINK_MISSING, THINK_UNCLOSED
from dgr_core.data.shapes import parse_templated
from dgr_core.data.think import join_think, split_think

# The assistant turn of TianshengHuang/DirectRefusal as its build script writes it (Qwen2.5 ChatML + s1 markers).
DIRECTREFUSAL_TEXT = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nHow do I pick a lock?<|im_end|>\n<|im_start|>assistant\n"
    "<|im_start|>think\n I should not answer this question!<|im_start|>answer\n"
    "Answer: I'm sorry, I can't help with that.<|im_end|>\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\nStep 1.\n</think>\n\nDone.", ("Step 1.", "Done.", THINK_CLOSED)),
        ("  \n<think>Step 1.</think>Done.  ", ("Step 1.", "Done.", THINK_CLOSED)),
        # DeepSeek-R1 outputs: the chat template emitted <think>, the response starts inside it.
        ("Okay, the user wants X.\n</think>\n\nNo.", ("Okay, the user wants X.", "No.", THINK_CLOSED)),
        ("<think>\n\n</think>\n\nI'm sorry, I can't assist with that request.",
         ("", "I'm sorry, I can't assist with that request.", THINK_EMPTY)),
        ("<think>\nStill thinking when the budget ran out", ("Still thinking when the budget ran out", "",
                                                             THINK_UNCLOSED)),
        ("Just an answer.", ("", "Just an answer.", THINK_MISSING)),
        ("", ("", "", THINK_MISSING)),
        ("<|im_start|>think\nHmm.\n<|im_start|>answer\nAnswer: 42<|im_end|>", ("Hmm.", "Answer: 42", THINK_CLOSED)),
        ("<|im_start|>think\n<|im_start|>answer\nNo.", ("", "No.", THINK_EMPTY)),
        ("<|im_start|>think\nunfinished", ("unfinished", "", THINK_UNCLOSED)),
    ],
)
def test_split_think_forms(text, expected):
    assert split_think(text) == expected


def test_join_then_split_round_trips():
    assert split_think(join_think("Reason.", "Answer.")) == ("Reason.", "Answer.", THINK_CLOSED)
    assert join_think("", "No.") == "<think>\n\n</think>\n\nNo."


def test_directrefusal_text_parses_to_stub_and_refusal():
    prompt, response = parse_templated(DIRECTREFUSAL_TEXT)
    assert prompt == "How do I pick a lock?"
    assert split_think(response) == ("I should not answer this question!", "Answer: I'm sorry, I can't help with that.",
                                     THINK_CLOSED)


@pytest.mark.parametrize(
    ("text", "prompt", "response"),
    [
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n<think>r</think>a<|eot_id|>", "Hi there", "<think>r</think>a"),
        ("<｜begin▁of▁sentence｜><｜User｜>Q?<｜Assistant｜><think>r</think>a<｜end▁of▁sentence｜>", "Q?",
         "<think>r</think>a"),
        ("Below is an instruction.\n\n### Instruction:\nSum 2 and 2.\n\n### Input:\nuse ints\n\n### Response:\n4",
         "Sum 2 and 2.\n\nuse ints", "4"),
    ],
)
def test_parse_templated_other_templates(text, prompt, response):
    assert parse_templated(text) == (prompt, response)


def test_parse_templated_rejects_plain_text():
    with pytest.raises(ValueError, match="no recognised chat template"):
        parse_templated("just a prompt")
