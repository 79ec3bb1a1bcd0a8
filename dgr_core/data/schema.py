"""The canonical row every dataset is converted to, and the metadata stored beside it.

Canonical columns: `id, prompt, reasoning, answer, source, category`, plus `think_status` (how the reasoning was
split from the answer) and, for refined rows, `parent_id` and provenance columns. Original columns are kept with
an `orig_` prefix where they would collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from dgr_core.config import Config

CANONICAL_COLUMNS = ["id", "prompt", "reasoning", "answer", "source", "category"]

# How the reasoning/answer split was found for a row.
THINK_CLOSED = "closed"  # <think>...</think> (or s1 markers) present and closed
THINK_UNCLOSED = "unclosed"  # an opening marker with no closing one: all text after it is reasoning, answer empty
THINK_MISSING = "missing"  # no markers: the whole response is the answer, reasoning empty
THINK_EMPTY = "empty"  # markers present but nothing inside (e.g. "<think>\n\n</think>")
THINK_STATUSES = (THINK_CLOSED, THINK_UNCLOSED, THINK_MISSING, THINK_EMPTY)


@dataclass
class ColumnMapping(Config):
    """Which original columns feed the canonical ones. `response` is split into reasoning + answer unless
    `reasoning`/`answer` columns are given directly. `messages` is an OpenAI/ShareGPT list column; `text` a single
    chat-templated string column."""

    shape: str = "custom"
    prompt: str | None = None
    response: str | None = None
    reasoning: str | None = None
    answer: str | None = None
    id: str | None = None
    source: str | None = None
    category: str | None = None
    messages: str | None = None
    text: str | None = None


@dataclass
class DatasetInfo(Config):
    """Metadata of a stored dataset (`meta.json` beside `data.parquet`)."""

    strict_keys: ClassVar[bool] = False  # a record on disk: keys of other versions are dropped

    name: str
    fingerprint: str
    n_rows: int
    origin: str  # file path, upload name, HF id, "demo:<what>" or "refine:<run id>"
    mapping: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    parent: str | None = None  # dataset this one was derived from (refinement, self-generation)
    description: str = ""
    think_counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
