"""Split a model response into its reasoning trace and its final answer, and join them back.

Reasoning models mark their chain of thought in one of two ways, and safety SFT sets use both:

- DeepSeek-R1 style: ``<think>\\n...\\n</think>\\n\\nanswer``. R1 outputs (and SafeChain, R1-ACT) often omit the
  opening tag because the chat template already emits it, so a lone ``</think>`` also counts as a closed block.
- s1 style (Safety-Tax, DirectRefusal): ``<|im_start|>think\\n...<|im_start|>answer\\n...<|im_end|>``.

`split_think` returns ``(reasoning, answer, status)`` where status is one of `schema.THINK_*`; both parts are
stripped of surrounding whitespace. `join_think` rebuilds an R1-style response from the two parts.

    >>> split_think("<think>\\nWhy?\\n</think>\\n\\nBecause.")
    ('Why?', 'Because.', 'closed')
"""

from __future__ import annotations

from dgr_core.data.schema import THINK_CLOSED, THINK_EMPTY, THINK_MISSING, THINK_UNCLOSED

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
S1_THINK = "<|im_start|>think"
S1_ANSWER = "<|im_start|>answer"
# End-of-turn tokens that a chat-templated response may carry at its very end; never part of the answer.
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<｜end▁of▁sentence｜>")


def strip_end_tokens(text: str) -> str:
    """Remove trailing end-of-turn tokens (and whitespace around them)."""
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for token in END_TOKENS:
            if text.endswith(token):
                text = text[: -len(token)].rstrip()
                changed = True
    return text


def _closed(reasoning: str, answer: str) -> tuple[str, str, str]:
    reasoning, answer = reasoning.strip(), answer.strip()
    return reasoning, answer, THINK_CLOSED if reasoning else THINK_EMPTY


def _split_s1(text: str) -> tuple[str, str, str]:
    """s1 markers: everything after `<|im_start|>think` up to `<|im_start|>answer` is reasoning."""
    after = text.split(S1_THINK, 1)[1]
    if S1_ANSWER not in after:
        return after.strip(), "", THINK_UNCLOSED
    reasoning, answer = after.split(S1_ANSWER, 1)
    return _closed(reasoning, answer)


def _split_r1(text: str) -> tuple[str, str, str]:
    """R1 tags. Text before `<think>` is kept in the reasoning rather than dropped: it is rare and a reader
    should still see it."""
    if THINK_CLOSE in text:
        head, answer = text.split(THINK_CLOSE, 1)
        return _closed(head.replace(THINK_OPEN, "", 1), answer)
    return text.replace(THINK_OPEN, "", 1).strip(), "", THINK_UNCLOSED


def split_think(text: str) -> tuple[str, str, str]:
    """Return `(reasoning, answer, status)` for one response; see the module docstring for the formats."""
    text = strip_end_tokens(text or "")
    if S1_THINK in text:
        return _split_s1(text)
    if THINK_OPEN in text or THINK_CLOSE in text:
        return _split_r1(text)
    return "", text, THINK_MISSING


def join_think(reasoning: str, answer: str) -> str:
    """Rebuild an R1-style response. An empty reasoning gives the LRM-Safety-Study "no CoT" form."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"
