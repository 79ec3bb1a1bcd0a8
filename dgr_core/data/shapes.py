"""Recognise the shape of a safety / reasoning dataset and convert its records to canonical rows.

`detect_mapping(columns, sample_records)` looks at the column names (and, for chat columns, at a few values) and
returns a `ColumnMapping`; `apply_mapping(records, mapping, file=...)` turns the records into a DataFrame with the
canonical columns (`schema.CANONICAL_COLUMNS`), `think_status`, and every original column (renamed `orig_<name>`
where it collides with a canonical one; list / dict values become JSON text so the table stays flat).

Shapes, in the order detection tries them:

| shape                  | columns                                   | example                       |
|------------------------|-------------------------------------------|-------------------------------|
| `text`                 | one chat-templated `text` string          | DirectRefusal, Small_SafeChain|
| `canonical`            | prompt + reasoning + answer               | a DGR Lens export             |
| `star1`                | question + response                       | STAR-1                        |
| `prompt_response`      | prompt + response                         | LRM-Safety-Study              |
| `alpaca`               | instruction + output (+ input)            | Alpaca                        |
| `instruction_response` | instruction + response                    | R1-ACT, SafeChain             |
| `prompt_completion`    | prompt + completion                       | TRL prompt-completion         |
| `messages`             | list of {role, content}                   | OpenAI chat                   |
| `sharegpt`             | list of {from, value}                     | ShareGPT                      |
| `prompt_only`          | a prompt column, no response              | StrongREJECT, XSTest, MATH    |

A chat-templated `text` column wins over a prompt/response pair because, in s1-style pipelines (Safety-Tax), `text`
is the string the model was actually fine-tuned on, while `response` can hold something else entirely (in
DirectRefusal it is the original, possibly harmful, BeaverTails answer).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.data.schema import (
    CANONICAL_COLUMNS,
    THINK_CLOSED,
    THINK_EMPTY,
    THINK_MISSING,
    ColumnMapping,
)
from dgr_core.data.think import split_think, strip_end_tokens
from dgr_core.errors import DataError

# (prompt column, response column, shape name), tried in order.
PAIRS = [
    ("question", "response", "star1"),
    ("prompt", "response", "prompt_response"),
    ("instruction", "output", "alpaca"),
    ("instruction", "response", "instruction_response"),
    ("prompt", "completion", "prompt_completion"),
]
# Prompt-only sets: the first present column is the prompt. `final_query` before `query`: in attack result files
# it is the (jailbroken) prompt the model actually saw.
PROMPT_ONLY = ["forbidden_prompt", "prompt", "question", "instruction", "final_query", "query", "problem",
               "goal", "behavior", "text", "input"]
ID_COLUMNS = ["id", "uid", "unique_id", "sample_id", "_id", "idx"]
SOURCE_COLUMNS = ["source", "data_source", "dataset"]
CATEGORY_COLUMNS = ["category", "categories", "subject", "type", "data_type"]
CHAT_COLUMNS = ["messages", "conversations", "conversation", "chat", "dialog"]
RESERVED = set(CANONICAL_COLUMNS) | {"think_status"}
MAPPED_FIELDS = ["prompt", "response", "reasoning", "answer", "id", "source", "category", "messages", "text"]

# Chat templates a single `text` field may use: (user start, user end or None, assistant start).
TEXT_TEMPLATES = {
    "chatml": ("<|im_start|>user", "<|im_end|>", "<|im_start|>assistant"),
    "llama3": ("<|start_header_id|>user<|end_header_id|>", "<|eot_id|>",
               "<|start_header_id|>assistant<|end_header_id|>"),
    "deepseek": ("<｜User｜>", None, "<｜Assistant｜>"),
    "alpaca": ("### Instruction:", None, "### Response:"),
}
USER_ROLES = {"user", "human"}
ASSISTANT_ROLES = {"assistant", "gpt", "chatgpt", "bot", "model"}


# ---------------------------------------------------------------- detection


def _first(candidates: list[str], columns: list[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _samples(records: list[dict], column: str) -> list[Any]:
    return [r.get(column) for r in records if isinstance(r, dict) and r.get(column) is not None]


def _template_of(text: str) -> str | None:
    """Name of the chat template a string uses, or None."""
    for name, (user, _end, assistant) in TEXT_TEMPLATES.items():
        if user in text and assistant in text:
            return name
    return None


def _is_templated(records: list[dict], column: str) -> bool:
    values = [v for v in _samples(records, column) if isinstance(v, str)]
    return bool(values) and all(_template_of(v) for v in values)


def _chat_shape(records: list[dict], column: str) -> str | None:
    """'messages' or 'sharegpt' if the column holds lists of chat turns."""
    for value in _samples(records, column)[:5]:
        turns = _as_list(value)
        if turns and isinstance(turns[0], dict):
            if {"role", "content"} <= turns[0].keys():
                return "messages"
            if {"from", "value"} <= turns[0].keys():
                return "sharegpt"
    return None


def _extras(columns: list[str]) -> dict[str, str | None]:
    return {"id": _first(ID_COLUMNS, columns), "source": _first(SOURCE_COLUMNS, columns),
            "category": _first(CATEGORY_COLUMNS, columns)}


def _detect_core(columns: list[str], records: list[dict]) -> ColumnMapping | None:
    if "text" in columns and _is_templated(records, "text"):
        return ColumnMapping(shape="text", text="text")
    if {"prompt", "reasoning", "answer"} <= set(columns):
        return ColumnMapping(shape="canonical", prompt="prompt", reasoning="reasoning", answer="answer")
    for prompt, response, shape in PAIRS:
        if prompt in columns and response in columns:
            return ColumnMapping(shape=shape, prompt=prompt, response=response)
    for column in sorted(columns, key=lambda c: c not in CHAT_COLUMNS):
        chat = _chat_shape(records, column)
        if chat:
            return ColumnMapping(shape=chat, messages=column)
    only = _first(PROMPT_ONLY, columns)
    return ColumnMapping(shape="prompt_only", prompt=only) if only else None


def detect_mapping(columns: list[str], sample_records: list[dict], *, file: str | None = None) -> ColumnMapping:
    """Guess which columns hold the prompt, response, id, source and category. Raises DataError if unknown."""
    mapping = _detect_core(list(columns), sample_records)
    if mapping is None:
        raise DataError(
            f"cannot tell which column holds the prompt. Columns seen: {', '.join(map(str, columns)) or 'none'}. "
            "Map them by hand: a prompt column (e.g. prompt / question / instruction) and optionally a response "
            "column, or reasoning + answer columns, or a `messages` list column, or a chat-templated `text` column.",
            file=file)
    for field, column in _extras(list(columns)).items():
        # A column already feeding the prompt or response is not also the id/source/category.
        if column and column not in (mapping.prompt, mapping.response):
            setattr(mapping, field, column)
    return mapping


# ---------------------------------------------------------------- parsing helpers


def _as_list(value: Any) -> list | None:
    """A list value (chat turns, category labels); a JSON list stored as text (e.g. in a CSV) is decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return list(value) if isinstance(value, list | tuple) else None


def _turn_text(content: Any) -> str:
    """Turn content as text; OpenAI content-part lists are joined."""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def parse_chat(value: Any) -> tuple[str, str | None]:
    """(prompt, response) from a messages / ShareGPT list: the last assistant turn and the user turn before it.
    Earlier turns and the system prompt stay in the original column."""
    turns = _as_list(value)
    if not turns:
        raise ValueError("chat column is not a list of turns")
    pairs = [(str(t.get("role", t.get("from", ""))).lower(), t.get("content", t.get("value")))
             for t in turns if isinstance(t, dict)]
    last_asst = max((i for i, (r, _) in enumerate(pairs) if r in ASSISTANT_ROLES), default=None)
    users = [i for i, (r, _) in enumerate(pairs) if r in USER_ROLES and (last_asst is None or i < last_asst)]
    if not users:
        raise ValueError("chat has no user turn")
    response = None if last_asst is None else _turn_text(pairs[last_asst][1])
    return _turn_text(pairs[users[-1]][1]).strip(), response


def parse_templated(text: str) -> tuple[str, str]:
    """(prompt, response) from one chat-templated string (ChatML, Llama-3, DeepSeek, ### Instruction).

    The response runs from the last assistant header to the end, so nested s1 markers (`<|im_start|>think`)
    stay inside it."""
    name = _template_of(text)
    if name is None:
        raise ValueError("text has no recognised chat template (ChatML, Llama-3, DeepSeek, "
                         "### Instruction / ### Response)")
    user, user_end, assistant = TEXT_TEMPLATES[name]
    a = text.rfind(assistant)
    u = text.rfind(user, 0, a)
    if u < 0:
        raise ValueError("text has an assistant turn but no user turn before it")
    prompt = text[u + len(user): a]
    if user_end and user_end in prompt:
        prompt = prompt.split(user_end, 1)[0]
    if name == "alpaca":
        prompt = "\n\n".join(part.strip() for part in prompt.split("### Input:") if part.strip())
    return prompt.strip(), strip_end_tokens(text[a + len(assistant):])


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def normalize_category(value: Any) -> str:
    """Category as one string: lists joined with '; ', dicts of flags give their true keys (DirectRefusal)."""
    if _is_missing(value):
        return ""
    if isinstance(value, str):
        parsed = _as_list(value)  # a list stored as JSON text, e.g. in a CSV
        if parsed is None:
            return value.strip()
        value = parsed
    if isinstance(value, dict):
        return "; ".join(str(k) for k, v in value.items() if v)
    if isinstance(value, list | tuple):
        return "; ".join(str(v).strip() for v in value if not _is_missing(v))
    return str(value)


def _flat(value: Any) -> Any:
    """Original values kept as they are, except lists / dicts, which become JSON text (flat, Parquet-safe)."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


# ---------------------------------------------------------------- applying a mapping


def columns_of(records: list[dict]) -> list[str]:
    """Union of the records' keys, in order of first appearance."""
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    return list(seen)


def _check_mapping(mapping: ColumnMapping, columns: list[str], file: str) -> None:
    if not (mapping.prompt or mapping.messages or mapping.text):
        raise DataError("the mapping names no prompt, messages or text column", file=file)
    for field in MAPPED_FIELDS:
        column = getattr(mapping, field)
        if column and column not in columns:
            raise DataError(f"column '{column}' (mapped to {field}) is not in the data; columns seen: "
                            f"{', '.join(map(str, columns))}", file=file, record=1)


def _text_field(record: dict, column: str | None, what: str) -> str | None:
    """A string field of a record; None when absent/null; DataError-ready ValueError when of another type."""
    value = record.get(column) if column else None
    if _is_missing(value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} (column '{column}') is a {type(value).__name__}, expected text")
    return value


def _prompt_response(record: dict, m: ColumnMapping) -> tuple[str | None, str | None]:
    if m.text:
        text = _text_field(record, m.text, "text")
        prompt, response = parse_templated(text) if text else (None, None)
    elif m.messages:
        prompt, response = parse_chat(record.get(m.messages))
    else:
        prompt, response = None, _text_field(record, m.response, "response")
    if m.prompt:  # an explicit prompt column wins over the parsed one
        prompt = _text_field(record, m.prompt, "prompt")
        if m.shape == "alpaca" and prompt and isinstance(record.get("input"), str) and record["input"].strip():
            prompt = f"{prompt}\n\n{record['input']}"
    return prompt, response


def _reasoning_answer(record: dict, m: ColumnMapping, response: str | None) -> tuple[str, str, str]:
    if m.reasoning or m.answer:
        reasoning = (_text_field(record, m.reasoning, "reasoning") or "").strip()
        answer = (_text_field(record, m.answer, "answer") or "").strip()
        status = (THINK_CLOSED if reasoning else THINK_EMPTY) if m.reasoning else THINK_MISSING
        return reasoning, answer, status
    if response is None:
        return "", "", THINK_MISSING
    return split_think(response)


def _row(record: dict, m: ColumnMapping, default_source: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError(f"record is a {type(record).__name__}, expected an object")
    prompt, response = _prompt_response(record, m)
    if prompt is None or not prompt.strip():
        raise ValueError("prompt is missing or empty" + (f" (column '{m.prompt}')" if m.prompt else ""))
    reasoning, answer, status = _reasoning_answer(record, m, response)
    source = record.get(m.source) if m.source else default_source
    return {"prompt": prompt.strip(), "reasoning": reasoning, "answer": answer,
            "source": "" if _is_missing(source) else str(source),
            "category": normalize_category(record.get(m.category)) if m.category else "",
            "think_status": status}


def _ids(records: list[dict], m: ColumnMapping, stem: str) -> list[str]:
    """Ids from the id column when every row has one and they are unique, else `<stem>-00000`…"""
    if m.id:
        values = [r.get(m.id) for r in records]
        if not any(_is_missing(v) for v in values):
            ids = [str(v) for v in values]
            if len(set(ids)) == len(ids):
                return ids
    return [f"{stem}-{i:05d}" for i in range(len(records))]


def _original_name(column: str) -> str:
    return f"orig_{column}" if column in RESERVED else column


def apply_mapping(records: list[dict], mapping: ColumnMapping, *, file: str,
                  stem: str | None = None) -> pd.DataFrame:
    """Canonical DataFrame from raw records. Raises DataError naming the file and the (1-based) record.

    `stem` names generated ids and the default `source` (default: the file name without extension)."""
    stem = stem or Path(file).stem
    _check_mapping(mapping, columns_of([r for r in records if isinstance(r, dict)]), file)
    rows = []
    for number, record in enumerate(records, start=1):
        try:
            rows.append(_row(record, mapping, stem))
        except ValueError as exc:  # also json.JSONDecodeError from a chat column stored as text
            raise DataError(str(exc), file=file, record=number) from None
    frame = pd.DataFrame(rows, columns=[c for c in CANONICAL_COLUMNS if c != "id"] + ["think_status"])
    frame.insert(0, "id", _ids(records, mapping, stem))
    for column in columns_of(records):
        frame[_original_name(column)] = [_flat(r.get(column)) for r in records]
    return frame

