"""Training rows: pick the subset to train on, and turn each row into input ids + labels.

Subset strategies (`SubsetConfig.strategy`):
- all: every row; random: `n` rows drawn with `seed` (same seed, same rows, in the same order);
- lowest_nll / highest_nll: the `n` rows the base model finds most / least likely (per-sample NLL from the
  scoring cache, `dgr_core.scoring.api`): "train on what the model already says" vs "on what is most foreign";
- category: rows of one category (`n` of them drawn with `seed`, or all);
- selection: the ids of a selection saved on the Shift page (`<workspace>/selections/<name>.json`).
Rows of a second dataset (`mix_dataset`, `mix_n`) can be mixed in, e.g. benign or math rows against
over-refusal; their ids are recorded as `<dataset>:<id>`.

Encoding: the row is rendered exactly as the scorer renders it (`dgr_core.scoring.segments.render`: the model's
chat template with the prompt as the user turn, then `<think>\\n{reasoning}\\n</think>\\n\\n{answer}` — or the
answer alone when there is no reasoning — then the end-of-turn token). Labels are the input ids on the assistant
turn (segment > PROMPT) and -100 elsewhere, so the loss covers exactly the assistant's reply and its end token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.errors import DataError
from dgr_core.scoring.segments import PROMPT, RenderConfig, render
from dgr_core.train.config import SubsetConfig
from dgr_core.workspace import Workspace

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # label value the loss skips (PyTorch cross-entropy's default ignore_index)
NllScorer = Callable[[pd.DataFrame], pd.DataFrame]  # rows -> table with `id` and nll_* columns


@dataclass
class Example:
    """One training row as the model sees it."""

    id: str
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt (chat template head), the ids on the assistant turn
    truncated: bool


# ---------------------------------------------------------------- encoding


def encode_row(row: dict[str, Any], tokenizer: Any, max_length: int) -> Example:
    """Input ids and labels of one canonical row (loss on the assistant turn only)."""
    enc = render(row, tokenizer, RenderConfig(mode="chat", max_length=max_length), key=str(row.get("id", "")))
    ids = enc.input_ids.astype(np.int64)
    labels = np.where(enc.segments > PROMPT, ids, IGNORE_INDEX)
    return Example(str(row.get("id", "")), ids.tolist(), labels.tolist(), bool(enc.truncated))


def encode_frame(df: pd.DataFrame, tokenizer: Any, max_length: int) -> list[Example]:
    """Encode every row; rows whose reply was cut away entirely (prompt longer than max_length) are dropped."""
    examples = [encode_row(r, tokenizer, max_length) for r in df.to_dict("records")]
    kept = [e for e in examples if any(label != IGNORE_INDEX for label in e.labels)]
    if not kept:
        raise DataError(f"no row has a reply within max_length={max_length} tokens; raise max_length.")
    if len(kept) < len(examples):
        log.warning("%d row(s) dropped: the prompt alone fills max_length=%d", len(examples) - len(kept), max_length)
    return kept


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors; padding gets attention 0 and label -100 (the pad id may equal the end-of-turn id)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------- selections


def load_selection(ws: Workspace, name: str) -> dict[str, Any]:
    """A selection saved on the Shift page: {"name", "dataset", "ids", ...}.

    Uses the Shift package's own reader when it exists, so both always agree on the format."""
    try:
        from dgr_core.shift.selections import load_selection as shift_load  # type: ignore[import-not-found]
    except ImportError:
        shift_load = None
    if shift_load is not None:
        sel = shift_load(ws, name)
        return sel if isinstance(sel, dict) else {k: getattr(sel, k, None) for k in ("name", "dataset", "ids")}
    path = ws.selections / f"{name}.json"
    if not path.is_file():
        raise DataError(f"no selection named {name!r} (looked for {path}).")
    try:
        sel = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"not valid JSON ({exc})", file=str(path)) from exc
    if not isinstance(sel, dict) or not isinstance(sel.get("ids"), list):
        raise DataError("a selection must be a JSON object with an 'ids' list", file=str(path))
    return sel


def list_selections(ws: Workspace, dataset: str | None = None) -> list[str]:
    """Names of the saved selections (of one dataset when given), sorted."""
    names = []
    for path in sorted(ws.selections.glob("*.json")):
        try:
            sel = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a broken file is not offered
        if isinstance(sel, dict) and (dataset is None or sel.get("dataset") in (None, dataset)):
            names.append(path.stem)
    return names


# ---------------------------------------------------------------- subsets


def choose_rows(df: pd.DataFrame, subset: SubsetConfig, *, nll: pd.Series | None = None,
                selection_ids: list[str] | None = None) -> pd.DataFrame:
    """The rows a strategy picks, in training order. `nll` (indexed by id) is needed for the NLL strategies,
    `selection_ids` for "selection"."""
    strategy, n = subset.strategy, subset.n
    if strategy == "all":
        return df.reset_index(drop=True)
    if strategy == "random":
        return _draw(df, n, subset.seed, "the dataset")
    if strategy == "category":
        rows = df[df["category"].astype(str) == str(subset.category)]
        return _draw(rows, n, subset.seed, f"category {subset.category!r}") if n else _nonempty(rows, subset)
    if strategy == "selection":
        return _selected(df, selection_ids or [], n, subset.seed)
    if nll is None:
        raise DataError(f"strategy {strategy!r} needs per-sample NLL scores.")
    return _by_nll(df, nll, n, ascending=strategy == "lowest_nll")


def _draw(rows: pd.DataFrame, n: int, seed: int, where: str) -> pd.DataFrame:
    if n > len(rows):
        raise DataError(f"asked for {n} rows but {where} has only {len(rows)}.")
    return rows.sample(n=n or len(rows), random_state=seed).reset_index(drop=True)


def _nonempty(rows: pd.DataFrame, subset: SubsetConfig) -> pd.DataFrame:
    if rows.empty:
        raise DataError(f"no row has category {subset.category!r}.")
    return rows.reset_index(drop=True)


def _selected(df: pd.DataFrame, ids: list[str], n: int, seed: int) -> pd.DataFrame:
    wanted = [str(i) for i in ids]
    by_id = df.set_index(df["id"].astype(str), drop=False)
    missing = [i for i in wanted if i not in by_id.index]
    if missing:
        raise DataError(f"{len(missing)} selected id(s) are not in the dataset, e.g. {missing[:3]}.")
    rows = by_id.loc[wanted].reset_index(drop=True)
    return _draw(rows, n, seed, "the selection") if n and n < len(rows) else rows


def _by_nll(df: pd.DataFrame, nll: pd.Series, n: int, ascending: bool) -> pd.DataFrame:
    values = nll.reindex(df["id"].astype(str)).to_numpy(dtype=float)
    order = np.argsort(values if ascending else -values, kind="stable")
    order = [i for i in order if np.isfinite(values[i])]  # rows without that segment (NaN) cannot be ranked
    if n > len(order):
        raise DataError(f"asked for {n} rows but only {len(order)} have an NLL score for this field.")
    return df.iloc[order[: n or len(order)]].reset_index(drop=True)


def mix_rows(rows: pd.DataFrame, mix: pd.DataFrame, subset: SubsetConfig) -> pd.DataFrame:
    """Append `mix_n` seeded rows of the mix dataset (ids prefixed with its name) and shuffle them in."""
    extra = _draw(mix, subset.mix_n, subset.seed, f"dataset {subset.mix_dataset!r}").copy()
    extra["id"] = [f"{subset.mix_dataset}:{i}" for i in extra["id"].astype(str)]
    both = pd.concat([rows, extra], ignore_index=True)
    return both.sample(frac=1.0, random_state=subset.seed).reset_index(drop=True)


def build_subset(ws: Workspace, dataset: str, subset: SubsetConfig, *,
                 nll_scorer: NllScorer | None = None) -> pd.DataFrame:
    """Load `dataset`, pick the rows, mix in the second dataset: the training frame.

    `nll_scorer` scores a frame under the base model (only called for the NLL strategies)."""
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    df = store.load(dataset)
    nll = ids = None
    if subset.strategy in ("lowest_nll", "highest_nll"):
        if nll_scorer is None:
            raise DataError(f"strategy {subset.strategy!r} needs a scorer for the base model.")
        table = nll_scorer(df)
        nll = pd.Series(table[subset.nll_field].to_numpy(), index=table["id"].astype(str))
    if subset.strategy == "selection":
        sel = load_selection(ws, str(subset.selection))
        if sel.get("dataset") not in (None, dataset):
            raise DataError(f"selection {subset.selection!r} belongs to dataset {sel['dataset']!r}, not {dataset!r}.")
        ids = [str(i) for i in sel["ids"]]
    rows = choose_rows(df, subset, nll=nll, selection_ids=ids)
    if subset.mix_n:
        rows = mix_rows(rows, store.load(str(subset.mix_dataset)), subset)
    return rows
