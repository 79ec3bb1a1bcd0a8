"""What the model sees: one dataset row rendered for scoring, training, generation or refinement, segment by
segment, with the exact text and the token count of each segment (the habit of lm-eval's `--write_out`).

    views = row_views(row, tokenizer, "score")        # list[View]: one per model call (two for separate refine)
    print(format_views(views))                        # the exact text with ⟦segment · n tok⟧ … ⟦/segment⟧ marks

Every view is built by `dgr_core.render`, the renderer the jobs use, so what is shown is what is computed:
- score: the ids the scorer runs (prompt = the template's generation prompt; the reply is scored);
- train: the ids SFT trains on, checked to be the scored ids, loss on every segment after the prompt;
- generate: the generation prompt the evaluation sends, then the row's reply as the reference continuation (a
  reply is read after its last `</think>`);
- refine: the refine prompt(s) for this model (the delimited template for thinking models), through the template.
`dgr render` prints them; the Datasets and Compare pages show them (`dgr_ui.render_view`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dgr_core.errors import DGRError
from dgr_core.render import SEGMENT_NAMES, Encoded, RenderConfig, encode_pieces, render, template_facts

PURPOSES = ("score", "train", "generate", "refine")


@dataclass
class Segment:
    name: str  # prompt, think_open, reasoning, think_close, answer, end_of_turn
    text: str  # the exact text of its tokens
    n_tokens: int


@dataclass
class View:
    title: str
    segments: list[Segment]
    input_ids: list[int]
    notes: list[str] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def segments_of(enc: Encoded, tokenizer: Any) -> list[Segment]:
    """Runs of tokens with the same label, decoded (a token crossing a boundary is shown where it was counted)."""
    out: list[Segment] = []
    ids, segs = enc.input_ids.tolist(), enc.segments.tolist()
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or segs[i] != segs[start]:
            text = tokenizer.decode(ids[start:i], skip_special_tokens=False)
            out.append(Segment(SEGMENT_NAMES[int(segs[start])], text, i - start))
            start = i
    return out


def template_notes(tokenizer: Any, cfg: RenderConfig) -> list[str]:
    """What the chat template does about think blocks, in words (found by rendering it)."""
    if cfg.mode != "chat":
        return ["raw mode: no chat template, prompt + blank line + reply as plain text"]
    facts = template_facts(tokenizer, cfg)
    notes = []
    if facts.opened:
        notes.append(f"the generation prompt already opens the think block ({facts.opened!r}): it is part of the "
                     "prompt and is not written again")
    if facts.closed_in_prompt:
        notes.append("the generation prompt holds an empty think block (thinking off): replies are answer-only")
    if facts.answer_prefill:
        notes.append(f"the template writes {facts.answer_prefill!r} before an answer-only reply")
    if facts.drops_reasoning:
        notes.append("the template drops the reasoning of assistant turns it renders: the reply is appended as "
                     "text instead, so the reasoning is kept")
    return notes or ["the template knows no think blocks (ChatML-like): the reply's markers are written as text"]


def _straddle_note(enc: Encoded) -> list[str]:
    if not enc.straddles:
        return []
    return [f"{enc.straddles} token(s) cross a segment boundary (e.g. '.\\n' before </think>); each is counted in "
            "the segment of its first character"]


def score_view(row: dict, tokenizer: Any, cfg: RenderConfig) -> View:
    enc = render(row, tokenizer, cfg)
    notes = template_notes(tokenizer, cfg) + _straddle_note(enc)
    if enc.truncated:
        notes.append(f"cut at max_length={cfg.max_length} tokens")
    return View("score: the reply is scored given the prompt", segments_of(enc, tokenizer),
                enc.input_ids.tolist(), notes)


def train_view(row: dict, tokenizer: Any, cfg: RenderConfig) -> View:
    from dgr_core.train.data import IGNORE_INDEX, encode_row

    example = encode_row(row, tokenizer, cfg.max_length)
    scored = render(row, tokenizer, cfg)
    same = example.input_ids == scored.input_ids.tolist()
    trained = sum(label != IGNORE_INDEX for label in example.labels)
    notes = [f"loss on {trained} tokens (every segment after the prompt)",
             f"ids identical to --for score: {'yes' if same else 'NO'}"]
    return View("train: SFT ids, loss on the reply", segments_of(scored, tokenizer), example.input_ids, notes)


def generate_view(row: dict, tokenizer: Any, cfg: RenderConfig) -> View:
    enc = render(row, tokenizer, cfg)
    facts = template_facts(tokenizer, cfg) if cfg.mode == "chat" else None
    notes = ["generation starts after the prompt; below it, the row's reply as the reference continuation",
             "the answer is read after the reply's last </think>"]
    if facts is not None and facts.opened:
        notes.append(f"the stored reply starts with {facts.opened!r} (written by the prompt), so a reply cut inside "
                     "its thinking reads as unclosed reasoning, never as an answer")
    return View("generate: the evaluation's generation prompt", segments_of(enc, tokenizer), enc.input_ids.tolist(),
                notes)


def refine_views(row: dict, tokenizer: Any, cfg: RenderConfig, mode: str = "joint", template: str = "") -> list[View]:
    from dgr_core.refine import engine
    from dgr_core.refine.templates import (
        RULES,
        STEP1_OUTPUT,
        STEP1_PLACEHOLDER,
        check_template,
        delimited_fields,
        render_template,
        split_parts,
        template_hash,
    )
    from dgr_core.render import generation_prompt

    template = engine.resolve_template(mode, template, tokenizer)
    check_template(template, mode)
    fields, views = delimited_fields(template), []
    for part, rule, asked in zip(split_parts(template), RULES[mode], fields, strict=True):
        message = render_template(part, {**row, STEP1_OUTPUT: STEP1_PLACEHOLDER})
        head = generation_prompt(tokenizer, [{"role": "user", "content": message}], cfg)
        enc = encode_pieces(head, [], tokenizer, 10**9)
        notes = [f"template {template_hash(template)} ({mode} mode)"]
        notes.append(f"the reply must write {', '.join(asked)} between delimiters; its thinking is kept as "
                     "provenance only" if asked else "the reply is split on its think block (plain contract)")
        views.append(View(f"refine: {rule.title}", segments_of(enc, tokenizer), enc.input_ids.tolist(), notes))
    return views


def row_views(row: dict, tokenizer: Any, purpose: str, cfg: RenderConfig | None = None, *, mode: str = "joint",
              template: str = "") -> list[View]:
    """The views of one row for `purpose` (score, train, generate, refine)."""
    cfg = cfg or RenderConfig()
    if purpose not in PURPOSES:
        raise DGRError(f"render: purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    if purpose == "refine":
        return refine_views(row, tokenizer, cfg, mode, template)
    build = {"score": score_view, "train": train_view, "generate": generate_view}[purpose]
    return [build(row, tokenizer, cfg)]


def counts_line(view: View) -> str:
    parts = ", ".join(f"{s.name} {s.n_tokens}" for s in view.segments)
    return f"{view.n_tokens} tokens ({parts})"


def marked_text(view: View) -> str:
    """The exact text, each segment between ⟦name · n tok⟧ and ⟦/name⟧ (nothing added inside)."""
    return "".join(f"⟦{s.name} · {s.n_tokens} tok⟧{s.text}⟦/{s.name}⟧" for s in view.segments)


def format_views(views: list[View]) -> str:
    """Views as text for a terminal: title, token counts, notes, then the marked text."""
    blocks = []
    for v in views:
        notes = "".join(f"  - {n}\n" for n in v.notes)
        blocks.append(f"=== {v.title}\n{counts_line(v)}\n{notes}\n{marked_text(v)}\n")
    return "\n".join(blocks)


def count_think_tokens(view: View, tokenizer: Any, tag: str = "<think>") -> int:
    """How many times the single token `tag` occurs in the view's ids (-1 if the tokenizer has no such token)."""
    tid = tokenizer.convert_tokens_to_ids(tag) if hasattr(tokenizer, "convert_tokens_to_ids") else None
    if tid is None or tid == getattr(tokenizer, "unk_token_id", None):
        return -1
    return int((np.asarray(view.input_ids) == tid).sum())

