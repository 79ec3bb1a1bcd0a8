"""One renderer for every path that shows a sample to a model: scoring, SFT, refine prompts, evaluation generation.

A canonical row (prompt, reasoning, answer) becomes the exact token ids the target model sees, each token labelled
by its segment: prompt / think_open / reasoning / think_close / answer / end_of_turn.

    enc = render(row, tokenizer, RenderConfig())       # ids + segment per token + the text + char spans
    facts = template_facts(tokenizer, RenderConfig())  # what the chat template does about think blocks
    generation_prompt(tokenizer, conversation)          # the text generation starts from (evaluation, refine)

How (chat mode):
1. The prompt part is the template's own *generation prompt* for the prompt as a user turn
   (`add_generation_prompt=True`, plus `enable_thinking` when `RenderConfig.thinking` is set, as Qwen3 reads it).
   It is tokenized on its own, exactly as a generation run tokenizes it.
2. What the template does is found by rendering it with placeholders, never from the model's name
   (`TemplateFacts`): whether the generation prompt already opens a think block (DeepSeek-R1-Distill ends it with
   `<think>\\n`), whether it holds a whole empty block (Qwen3 with thinking off), what it writes before an
   answer-only reply (Qwen3: an empty think block), the end-of-turn text, and whether it drops the reasoning of
   assistant turns it renders (R1-Distill keeps only what follows the last `</think>`).
3. The reply is appended as text, never rendered through the template (which may drop the reasoning):
   `think_open + reasoning + think_close + answer + end_of_turn`, except that the part of `think_open` the
   generation prompt already wrote is not written again. So there is never a second `<think>` and the reasoning
   is never lost. A row with reasoning under a generation prompt that closed the think block (thinking off) is a
   DataError rather than a silent drop. Markers are R1 style by default; `MARKERS["s1"]` gives s1's
   `<|im_start|>think` / `<|im_start|>answer`.
4. The reply is tokenized as one text (its tokens are what the model would produce) and every token is labelled
   by the segment of its first character. A byte-level BPE token can still cross a boundary (Qwen2's regex glues
   a newline to the punctuation before it: `.\\n` then `</think>`); such tokens are counted in
   `Encoded.straddles` and shown by `dgr render`, never hidden.

Raw mode: `prompt + "\\n\\n"` then the reply with R1 markers and the tokenizer's eos, no template, tokenized as
one plain text (a document, not a generation prompt; unchanged from the renderer this module replaced).

Scoring and SFT both call `render`, so the ids scored and the ids trained on are identical by construction (and a
test asserts it). For templates that know nothing about think blocks (SmolLM2, ChatML) the result is byte-identical
to the renderer this module replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dgr_core.errors import DataError

# Segment labels of tokens. PROMPT tokens are context only and never scored or trained on.
PROMPT, OPEN, REASONING, CLOSE, ANSWER, END = 0, 1, 2, 3, 4, 5
SEGMENT_NAMES = {PROMPT: "prompt", OPEN: "think_open", REASONING: "reasoning", CLOSE: "think_close",
                 ANSWER: "answer", END: "end_of_turn"}
PLACEHOLDER = "\u2063DGR\u2063"  # invisible separators: never part of real content
_USER_PH, _REASON_PH = "\u2063DGRU\u2063", "\u2063DGRR\u2063"
MARKERS = {"r1": ("<think>\n", "\n</think>\n\n"), "s1": ("<|im_start|>think\n", "\n<|im_start|>answer\n")}
RENDER_VERSION = 2  # 2: generation-prompt-aware think blocks, prompt tokenized on its own


@dataclass(frozen=True)
class RenderConfig:
    mode: str = "chat"  # "chat" (the model's template) or "raw"
    think_open: str = "<think>\n"
    think_close: str = "\n</think>\n\n"
    max_length: int = 4096  # longer sequences are cut from the right and flagged truncated
    thinking: bool | None = None  # passed to the template as enable_thinking (Qwen3); None = its default

    def template_kwargs(self) -> dict[str, Any]:
        return {} if self.thinking is None else {"enable_thinking": bool(self.thinking)}


@dataclass
class Encoded:
    """One sample ready for a forward pass. `segments[i]` labels token i; `spans` are (segment, start, end) in
    `text`; `straddles` counts tokens that cross a segment boundary (labelled by their first character)."""

    key: str
    input_ids: np.ndarray  # int64 [T]
    segments: np.ndarray  # int8 [T]
    text: str
    truncated: bool
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    straddles: int = 0

    @property
    def n_response(self) -> int:
        return int((self.segments > PROMPT).sum())


@dataclass(frozen=True)
class TemplateFacts:
    """What a chat template does about think blocks, found by rendering it with placeholders."""

    gen_suffix: str  # what the generation prompt writes after the user's message
    opened: str  # the think-open text the generation prompt ends with ("" = it opens none), e.g. "<think>\n"
    rest_open: str  # what is still to write of think_open after `opened` (usually "")
    closed_in_prompt: bool  # the generation prompt holds a whole (empty) think block: thinking is off
    answer_prefill: str  # what the template writes before an answer-only reply (Qwen3: "<think>\n\n</think>\n\n")
    end_of_turn: str  # what follows the reply (through the eos token)
    drops_reasoning: bool  # rendering an assistant turn with a think block through the template loses the reasoning

    @property
    def thinks(self) -> bool:
        """The template knows think blocks (opens one, pre-fills one, or can switch thinking off)."""
        return bool(self.opened or self.closed_in_prompt or self.answer_prefill.strip())


_FACTS: dict[tuple, TemplateFacts] = {}


def _apply(tokenizer: Any, messages: list[dict[str, str]], cfg: RenderConfig, gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False, **cfg.template_kwargs())


def generation_prompt(tokenizer: Any, conversation: list[dict[str, str]], cfg: RenderConfig | None = None) -> str:
    """The text a generation starts from: the template's own generation prompt (evaluation, refinement)."""
    return _apply(tokenizer, conversation, cfg or RenderConfig(), True)


def _tags(cfg: RenderConfig) -> tuple[str, str]:
    return cfg.think_open.strip(), cfg.think_close.strip()


def template_facts(tokenizer: Any, cfg: RenderConfig | None = None) -> TemplateFacts:
    """The think-block facts of `tokenizer`'s chat template under `cfg` (cached per template and markers)."""
    cfg = cfg or RenderConfig()
    key = (str(getattr(tokenizer, "chat_template", None)), getattr(tokenizer, "bos_token", None),
           getattr(tokenizer, "eos_token", None), cfg.think_open, cfg.think_close, cfg.thinking)
    if key not in _FACTS:
        _FACTS[key] = _probe(tokenizer, cfg)
    return _FACTS[key]


def _probe(tokenizer: Any, cfg: RenderConfig) -> TemplateFacts:
    user = [{"role": "user", "content": _USER_PH}]
    head = _apply(tokenizer, user, cfg, True)
    suffix = head.split(_USER_PH, 1)[1] if _USER_PH in head else ""
    opened, rest = _opened(suffix, cfg)
    open_tag, close_tag = _tags(cfg)
    closed = open_tag in suffix and close_tag in suffix[suffix.rfind(open_tag):]
    full = _apply(tokenizer, [*user, {"role": "assistant", "content": PLACEHOLDER}], cfg, False)
    prefill = full[len(head): full.index(PLACEHOLDER)] if full.startswith(head) and PLACEHOLDER in full else ""
    with_think = cfg.think_open + _REASON_PH + cfg.think_close + PLACEHOLDER
    drops = _REASON_PH not in _apply(tokenizer, [*user, {"role": "assistant", "content": with_think}], cfg, False)
    return TemplateFacts(suffix, opened, rest, closed and not opened, prefill, _end_of_turn(tokenizer, full), drops)


def _opened(suffix: str, cfg: RenderConfig) -> tuple[str, str]:
    """(the open-think text `suffix` ends with, what remains to write of think_open) or ("", "")."""
    open_tag, close_tag = _tags(cfg)
    at = suffix.rfind(open_tag) if open_tag else -1
    if at < 0 or close_tag in suffix[at:] or suffix[at + len(open_tag):].strip():
        return "", ""
    written = suffix[at + len(open_tag):]  # whitespace the template wrote after the tag
    after = cfg.think_open[cfg.think_open.index(open_tag) + len(open_tag):]
    return suffix[at:], after[len(written):] if after.startswith(written) else ""


def _end_of_turn(tokenizer: Any, full: str) -> str:
    tail = full.split(PLACEHOLDER, 1)[1] if PLACEHOLDER in full else ""
    eos = getattr(tokenizer, "eos_token", None)
    # Score the end-of-turn token the model must emit, not the template's trailing newlines.
    if eos and eos in tail:
        tail = tail[: tail.index(eos) + len(eos)]
    return tail.rstrip("\n ")


# ---- the reply ----------------------------------------------------------------------------------------------

def row_parts(row: dict) -> tuple[str, str, str, bool]:
    """(prompt, reasoning, answer, has_think) of a canonical row; whitespace around each part is dropped."""
    prompt, reasoning, answer = (_cell(row.get(k)).strip() for k in ("prompt", "reasoning", "answer"))
    return prompt, reasoning, answer, bool(reasoning) or row.get("think_status") == "empty"


def _cell(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def reply_pieces(reasoning: str, answer: str, has_think: bool, facts: TemplateFacts | None,
                 cfg: RenderConfig) -> list[tuple[int, str]]:
    """The assistant reply as (segment, text) pieces, continuing the generation prompt described by `facts`
    (None: no template)."""
    if facts is not None and facts.opened:  # the generation prompt opened the block: continue it
        return [(OPEN, facts.rest_open), (REASONING, reasoning), (CLOSE, cfg.think_close), (ANSWER, answer)]
    if facts is not None and facts.closed_in_prompt:
        if reasoning:
            raise DataError("this row has reasoning but the chat template's generation prompt already closed the "
                            "think block (thinking is off, e.g. enable_thinking=False): rendering it would open a "
                            "second think block. Turn thinking on (or leave it unset) to score or train it.")
        return [(ANSWER, answer)]
    if has_think:
        return [(OPEN, cfg.think_open), (REASONING, reasoning), (CLOSE, cfg.think_close), (ANSWER, answer)]
    return [*_prefill_pieces(facts.answer_prefill if facts else "", cfg), (ANSWER, answer)]


def _prefill_pieces(prefill: str, cfg: RenderConfig) -> list[tuple[int, str]]:
    close_tag = _tags(cfg)[1]
    if close_tag and close_tag in prefill:
        at = prefill.index(close_tag)
        return [(OPEN, prefill[:at]), (CLOSE, prefill[at:])]
    return [(OPEN, prefill)]


def render(row: dict, tokenizer: Any, cfg: RenderConfig | None = None, key: str = "") -> Encoded:
    """Build the sequence of one row and label every token by segment (see the module docstring)."""
    cfg = cfg or RenderConfig()
    prompt, reasoning, answer, has_think = row_parts(row)
    if cfg.mode == "chat":
        facts = template_facts(tokenizer, cfg)
        head = _apply(tokenizer, [{"role": "user", "content": prompt}], cfg, True)
        tail = facts.end_of_turn
    else:
        facts, head, tail = None, "", (getattr(tokenizer, "eos_token", None) or "")
    pieces = [*reply_pieces(reasoning, answer, has_think, facts, cfg), (END, tail)]
    if cfg.mode != "chat":  # one plain text: the prompt is a labelled piece of it
        pieces = [(PROMPT, prompt + "\n\n"), *pieces]
    return encode_pieces(head, pieces, tokenizer, cfg.max_length, key)


def encode_pieces(head: str, pieces: list[tuple[int, str]], tokenizer: Any, max_length: int,
                  key: str = "") -> Encoded:
    """Token ids of `head` (tokenized alone, as a generation run does) then of the reply pieces (tokenized as one
    text), each token labelled by the segment of its first character."""
    head_ids = list(tokenizer(head, add_special_tokens=False)["input_ids"]) if head else []
    reply, bounds = "", []  # bounds: (start char in reply, segment)
    for seg, piece in pieces:
        if piece:
            bounds.append((len(reply), seg))
            reply += piece
    ids, segs, straddles = _label(reply, bounds, tokenizer)
    all_ids = np.asarray(head_ids + ids, dtype=np.int64)
    segments = np.concatenate([np.full(len(head_ids), PROMPT, dtype=np.int8), segs])
    spans = [(PROMPT, 0, len(head))] if head else []
    ends = [b for b, _ in bounds[1:]] + [len(reply)] if bounds else []
    spans += [(s, len(head) + b, len(head) + e) for (b, s), e in zip(bounds, ends, strict=True)]
    truncated = len(all_ids) > max_length
    return Encoded(key, all_ids[:max_length], segments[:max_length], head + reply, truncated, spans, straddles)


def _label(reply: str, bounds: list[tuple[int, int]], tokenizer: Any) -> tuple[list[int], np.ndarray, int]:
    if not reply:
        return [], np.zeros(0, dtype=np.int8), 0
    enc = tokenizer(reply, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    edges = np.array([b for b, _ in bounds], dtype=np.int64)
    segs = np.array([s for _, s in bounds], dtype=np.int8)
    first = np.searchsorted(edges, offsets[:, 0], side="right") - 1
    last = np.searchsorted(edges, np.maximum(offsets[:, 1] - 1, offsets[:, 0]), side="right") - 1
    return list(enc["input_ids"]), segs[first], int((first != last).sum())


# ---- generation -------------------------------------------------------------------------------------------

def opened_think(tokenizer: Any, cfg: RenderConfig | None = None) -> str:
    """The think-open text the generation prompt already wrote ("" if none): a generated reply continues it."""
    if not getattr(tokenizer, "chat_template", None):
        return ""
    return template_facts(tokenizer, cfg).opened


def full_reply(generated: str, opened: str) -> str:
    """The whole assistant reply: the think-open the generation prompt wrote, then what the model generated
    (unless the model wrote its own open tag), so a reply cut inside its thinking reads as unclosed reasoning,
    not as an answer."""
    if not opened or generated.lstrip().startswith(opened.strip()):
        return generated
    return opened + generated


def split_reply(text: str, cfg: RenderConfig | None = None) -> tuple[str, str, str]:
    """(thinking, answer, status) of a generated reply: the answer is what follows the LAST think-close tag; the
    thinking is everything before it without its open/close tags. status: "closed", "unclosed" (an open tag, no
    close), "missing" (no tags), "nested" (think tags inside the thinking)."""
    open_tag, close_tag = _tags(cfg or RenderConfig())
    if close_tag not in text:
        if open_tag in text:
            return text.split(open_tag, 1)[1].strip(), "", "unclosed"
        return "", text.strip(), "missing"
    thinking, answer = text.rsplit(close_tag, 1)
    thinking = thinking.strip()
    if thinking.startswith(open_tag):
        thinking = thinking[len(open_tag):].strip()
    nested = open_tag in thinking or close_tag in thinking or open_tag in answer
    return thinking, answer.strip(), "nested" if nested else "closed"
