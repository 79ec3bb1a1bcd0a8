"""Parsing a refine generation into a rewrite: the delimited contract of thinking models
(`<rewritten_reasoning>` / `<rewritten_answer>` read after the model's last `</think>`, its thinking kept apart),
the plain step outputs of non-thinking models, and self mode (the model's own think block is the reasoning).

    rewrite, thinking, error = parse_outcome("joint", record)    # error: "missing_delimiters", "unclosed_think", …
    parse_record(mode, record)                                     # the Rewrite alone
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dgr_core.data.schema import THINK_CLOSED, THINK_EMPTY, THINK_MISSING, THINK_UNCLOSED
from dgr_core.data.think import split_think, strip_end_tokens
from dgr_core.refine.filters import Rewrite
from dgr_core.refine.templates import (
    REWRITE_TAGS,
    SEPARATOR,
)
from dgr_core.render import split_reply


def reasoning_step_text(raw: str) -> str:
    """The reasoning out of a separate-mode first step (a model may still wrap it in think tags)."""
    reasoning, answer, status = split_think(raw)
    return answer if status == THINK_MISSING else reasoning


def answer_step_text(raw: str) -> str:
    """The answer out of a separate-mode second step (text after a think block if the model wrote one)."""
    _, answer, status = split_think(raw)
    return "" if status == THINK_UNCLOSED else answer


@dataclass
class Delimited:
    """One output parsed under the delimited contract: the rewrite fields, the model's thinking, or why not."""

    values: dict[str, str]
    thinking: str
    error: str = ""


def parse_delimited(raw: str, fields: Sequence[str]) -> Delimited:
    """Take `fields` from their delimiters after the model's last `</think>`; the thinking before it is kept as
    provenance. A block missing, written twice, or holding another delimiter or a think tag is an error."""
    thinking, after, status = split_reply(raw)
    if status == "unclosed":
        return Delimited({}, thinking, "unclosed_think: the think block was never closed, so no rewrite follows it")
    if status == "missing":
        thinking = _outside_blocks(after)
    values: dict[str, str] = {}
    for name in fields:
        value, error = _block(after, name, thinking)
        if error:
            return Delimited(values, thinking, error)
        values[name] = value
    return Delimited(values, thinking)


def _block(after: str, name: str, thinking: str) -> tuple[str, str]:
    open_tag, close_tag = REWRITE_TAGS[name]
    n_open, n_close = after.count(open_tag), after.count(close_tag)
    if n_open > 1 or n_close > 1:
        return "", f"doubled_delimiters: {open_tag} written {max(n_open, n_close)} times after the thinking"
    if n_open == 0 and n_close == 1 and open_tag in thinking:
        return "", f"nested_delimiters: a </think> inside the {open_tag} block"
    if n_open == 0 and n_close == 0:
        return "", f"missing_delimiters: no {open_tag}...{close_tag} block after the thinking"
    if n_open != n_close or after.index(close_tag) < after.index(open_tag):
        return "", f"missing_delimiters: {open_tag} is not closed by {close_tag}"
    body = after.split(open_tag, 1)[1].split(close_tag, 1)[0]
    inner = [t for pair in REWRITE_TAGS.values() for t in pair] + ["<think>", "</think>"]
    found = [t for t in inner if t in body]
    if found:
        return "", f"nested_delimiters: {found[0]} inside the {open_tag} block"
    return body.strip(), ""


def _outside_blocks(text_: str) -> str:
    """Text around the delimited blocks (a model that does not think may still write a preamble)."""
    for open_tag, close_tag in REWRITE_TAGS.values():
        if open_tag in text_ and close_tag in text_.split(open_tag, 1)[1]:
            head, rest = text_.split(open_tag, 1)
            text_ = head + rest.split(close_tag, 1)[1]
    return text_.strip()


def _finish(outs: list[dict[str, Any]]) -> str:
    return "length" if any(o.get("finish_reason") == "length" for o in outs) else "stop"


def _parse_contract(record: dict[str, Any]) -> tuple[Rewrite, str, str]:
    """(rewrite, thinking, error) of a record made with a delimited template."""
    outs = record.get("outputs") or []
    raws = [o.get("text", "") for o in outs]
    values, thoughts, error = {}, [], ""
    for raw, fields in zip(raws, record["delimited"], strict=False):
        parsed = parse_delimited(raw, fields)
        values.update(parsed.values)
        thoughts.append(parsed.thinking)
        error = error or parsed.error
    if len(raws) < len(record["delimited"]) and not error:
        error = "missing_delimiters: a step produced no output"
    reasoning, answer = values.get("reasoning", ""), values.get("answer", "")
    raw = f"\n\n{SEPARATOR}\n\n".join(raws)
    rewrite = Rewrite(reasoning, answer, THINK_CLOSED if reasoning else THINK_EMPTY, _finish(outs), raw)
    return rewrite, f"\n\n{SEPARATOR}\n\n".join(t for t in thoughts), error


def _parse_self(record: dict[str, Any]) -> tuple[Rewrite, str, str]:
    """Self mode: the model's own think block is the reasoning, the answer follows its last `</think>`."""
    outs = record.get("outputs") or []
    raw = outs[0]["text"] if outs else ""
    if raw.count("</think>") <= 1 and raw.count("<think>") <= 1:  # one block (or none): the dataset splitter
        return parse_record("self", record), "", ""
    reasoning, answer, status = split_reply(strip_end_tokens(raw))
    think = {"closed": THINK_CLOSED if reasoning else THINK_EMPTY, "unclosed": THINK_UNCLOSED,
             "missing": THINK_MISSING}.get(status, THINK_CLOSED)
    error = "nested_think: think tags inside the model's thinking" if status == "nested" else ""
    return Rewrite(reasoning, answer, think, _finish(outs), raw), "", error


def parse_outcome(mode: str, record: dict[str, Any]) -> tuple[Rewrite, str, str]:
    """(rewrite, the model's thinking about the task (provenance), parse error or "") of one record."""
    if record.get("delimited") and any(record["delimited"]):
        return _parse_contract(record)
    if mode == "self":
        return _parse_self(record)
    rewrite = parse_record(mode, record)
    if "<think>" in rewrite.answer or "</think>" in rewrite.answer:  # a think block inside the answer
        return rewrite, "", "nested_think: the answer holds another think block (use the delimited template)"
    return rewrite, "", ""


def parse_record(mode: str, record: dict[str, Any]) -> Rewrite:
    """The rewrite a record of the plain contract holds: reasoning, answer, think status, how it ended, raw text."""
    outs = record.get("outputs") or []
    finish = _finish(outs)
    if mode == "separate":
        raw1, raw2 = ([o.get("text", "") for o in outs] + ["", ""])[:2]
        reasoning, answer = reasoning_step_text(raw1).strip(), answer_step_text(raw2).strip()
        status = THINK_CLOSED if reasoning else THINK_EMPTY
        return Rewrite(reasoning, answer, status, finish, f"{raw1}\n\n{SEPARATOR}\n\n{raw2}")
    raw = outs[0]["text"] if outs else ""
    reasoning, answer, status = split_think(raw)
    return Rewrite(reasoning, answer, status, finish, raw)
