"""Turn a canonical row into the exact token sequence the target model sees, with a segment label per token.

Chat mode renders `generation prompt(prompt) + assistant content + end of turn`, where the generation prompt is
the model's own chat template with `add_generation_prompt=True` and the end of turn is whatever the template puts
after an assistant message (found by rendering a placeholder). We append the content ourselves instead of
rendering it through the template because some reasoning-model templates (DeepSeek-R1 distills, Qwen3) strip the
`<think>` block from assistant turns, which would silently drop the reasoning we want to score.

The content is `think_open + reasoning + think_close + answer` (markers from `ScoreConfig`). The whole text is
tokenized once (what the model really sees) and each token is labelled by the segment in which its first
character lies. Reasoning and answer are stripped and the markers end in a newline, so byte-level BPE tokens never
straddle a boundary and the decoded reasoning tokens give back the reasoning text exactly.

Raw mode: `prompt + "\n\n" + content`, no template.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Segment labels of response tokens. PROMPT tokens are context only and never scored.
PROMPT, OPEN, REASONING, CLOSE, ANSWER, END = 0, 1, 2, 3, 4, 5
SEGMENT_NAMES = {PROMPT: "prompt", OPEN: "think_open", REASONING: "reasoning", CLOSE: "think_close",
                 ANSWER: "answer", END: "end_of_turn"}
PLACEHOLDER = "\u2063DGR\u2063"  # invisible separators: never part of real content


@dataclass(frozen=True)
class RenderConfig:
    mode: str = "chat"  # "chat" (the model's template) or "raw"
    think_open: str = "<think>\n"
    think_close: str = "\n</think>\n\n"
    max_length: int = 4096  # longer sequences are cut from the right and flagged truncated


@dataclass
class Encoded:
    """One sample ready for a forward pass. `segments[i]` labels token i; `spans` are the char spans."""

    key: str
    input_ids: np.ndarray  # int64 [T]
    segments: np.ndarray  # int8 [T]
    text: str
    truncated: bool

    @property
    def n_response(self) -> int:
        return int((self.segments > PROMPT).sum())


def assistant_content(reasoning: str, answer: str, think: bool, cfg: RenderConfig) -> list[tuple[int, str]]:
    """The assistant turn as (segment, text) pieces."""
    if not think:
        return [(ANSWER, answer)]
    return [(OPEN, cfg.think_open), (REASONING, reasoning), (CLOSE, cfg.think_close), (ANSWER, answer)]


def chat_frame(tokenizer, prompt: str) -> tuple[str, str]:
    """(text before the assistant content, end-of-turn text after it) for this tokenizer's chat template."""
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": PLACEHOLDER}], tokenize=False)
    tail = full.split(PLACEHOLDER, 1)[1] if PLACEHOLDER in full else ""
    eos = getattr(tokenizer, "eos_token", None)
    # Score the end-of-turn token the model must emit, not the template's trailing newlines.
    if eos and eos in tail:
        tail = tail[: tail.index(eos) + len(eos)]
    return head, tail.rstrip("\n ")


def render(row: dict, tokenizer, cfg: RenderConfig, key: str = "") -> Encoded:
    """Build the sequence of one row and label every token by segment."""
    prompt, reasoning, answer = (str(row.get(k) or "").strip() for k in ("prompt", "reasoning", "answer"))
    think = bool(reasoning) or row.get("think_status") == "empty"
    pieces = assistant_content(reasoning, answer, think, cfg)
    if cfg.mode == "chat":
        head, tail = chat_frame(tokenizer, prompt)
    else:
        head, tail = prompt + "\n\n", (getattr(tokenizer, "eos_token", None) or "")
    pieces = [(PROMPT, head), *pieces, (END, tail)]
    return _tokenize_pieces(pieces, tokenizer, cfg, key)


def _tokenize_pieces(pieces: list[tuple[int, str]], tokenizer, cfg: RenderConfig, key: str) -> Encoded:
    text, bounds = "", []  # bounds: (start char, segment)
    for seg, piece in pieces:
        if piece:
            bounds.append((len(text), seg))
            text += piece
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = np.array([s for s, _ in enc["offset_mapping"]], dtype=np.int64)
    edge_chars = np.array([b for b, _ in bounds], dtype=np.int64)
    edge_segs = np.array([s for _, s in bounds], dtype=np.int8)
    segments = edge_segs[np.searchsorted(edge_chars, starts, side="right") - 1]
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    truncated = len(ids) > cfg.max_length
    return Encoded(key, ids[: cfg.max_length], segments[: cfg.max_length], text, truncated)


def token_pieces(tokenizer, ids: np.ndarray) -> list[str]:
    """Decoded text of each token (multi-byte characters split over tokens decode to their bytes' replacement
    only at the end of the character, so the concatenation equals the decoded text)."""
    out, prev = [], ""
    ids = [int(i) for i in ids]
    for n in range(1, len(ids) + 1):
        cur = tokenizer.decode(ids[:n], skip_special_tokens=False)
        if cur.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the rest of the character
            out.append("")
            continue
        out.append(cur[len(prev):])
        prev = cur
    return out
