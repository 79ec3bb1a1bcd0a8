"""Training rows: pick the subset to train on, and turn each row into input ids + labels.

Subset strategies (`SubsetConfig.strategy`):
- all: every row; random: `n` rows drawn with `seed` (same seed, same rows, in the same order);
- lowest_nll / highest_nll: the `n` rows the base model finds most / least likely (per-sample NLL from the
  scoring cache, `dgr_core.scoring.api`): "train on what the model already says" vs "on what is most foreign";
- category: rows of one category (`n` of them drawn with `seed`, or all);
- selection: the ids of a selection saved on the Shift page (`dgr_core.shift.selections`, one JSON file per
  selection); `n` smaller than the selection draws `n` of them with `seed`.
Rows of a second dataset (`mix_dataset`, `mix_n`) can be mixed in, e.g. benign or math rows against
over-refusal; their ids are recorded as `<dataset>:<id>`.

Encoding: the row is rendered by the one renderer the scorer uses (`dgr_core.render.render`: the chat template's
generation prompt for the prompt as the user turn, then `<think>\\n{reasoning}\\n</think>\\n\\n{answer}` minus the
part of the think-open the generation prompt already wrote (R1-Distill), or the answer alone / the template's own
pre-fill when there is no reasoning, then the end-of-turn token), so the ids trained on are the ids scored. Labels
are the input ids on the assistant turn (segment > PROMPT) and -100 elsewhere, so the loss covers exactly the
assistant's reply and its end token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.errors import DataError
from dgr_core.render import PROMPT, RenderConfig, render
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


def selection_ids(ws: Workspace, name: str, dataset: str) -> list[str]:
    """The ids of a selection saved on the Shift page (`dgr_core.shift.selections`), checked to belong to
    `dataset`. A selection saved before the dataset changed still works if its ids are there (with a warning)."""
    from dgr_core.shift.selections import load_selection

    sel = load_selection(ws, name)
    if sel.dataset != dataset:
        raise DataError(f"selection {name!r} belongs to dataset {sel.dataset!r}, not {dataset!r}.")
    if sel.is_stale(ws):
        log.warning("selection %r was saved before dataset %r last changed", name, dataset)
    return [str(i) for i in sel.ids]


def list_selections(ws: Workspace, dataset: str | None = None) -> list[str]:
    """Names of the saved selections (of one dataset when given), sorted."""
    from dgr_core.shift.selections import list_selections as shift_list

    return [sel.name for sel in shift_list(ws, dataset)]


def dataset_categories(ws: Workspace, dataset: str) -> list[str]:
    """The distinct non-empty categories of a dataset, sorted (for the "category" strategy)."""
    from dgr_core.data.store import DatasetStore

    df = DatasetStore(ws).load(dataset)
    if "category" not in df.columns:
        return []
    return sorted({str(c) for c in df["category"].dropna() if str(c).strip()})


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
        if "category" not in df.columns:
            raise DataError("strategy 'category' needs a 'category' column; this dataset has none.")
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
    ranked = np.argsort(values if ascending else -values, kind="stable")
    order = [int(i) for i in ranked if np.isfinite(values[i])]  # rows without that segment (NaN) cannot be ranked
    if n > len(order):
        raise DataError(f"asked for {n} rows but only {len(order)} have an NLL score for this field.")
    return df.iloc[order[: n or len(order)]].reset_index(drop=True)


def mix_rows(rows: pd.DataFrame, mix: pd.DataFrame, subset: SubsetConfig) -> pd.DataFrame:
    """Append `mix_n` seeded rows of the mix dataset (ids prefixed with its name) and shuffle them in."""
    extra = _draw(mix, subset.mix_n, subset.seed, f"dataset {subset.mix_dataset!r}").copy()
    extra["id"] = [f"{subset.mix_dataset}:{i}" for i in extra["id"].astype(str)]
    both = pd.concat([rows, extra], ignore_index=True)
    return both.sample(frac=1.0, random_state=subset.seed).reset_index(drop=True)


def hold_out(df: pd.DataFrame, prompts: list[str]) -> pd.DataFrame:
    """The rows whose prompt (whitespace-trimmed) is not one of `prompts`: the evaluation's prompts, so that a
    before/after comparison measures what training activated, not what it memorised. Logs how many it dropped."""
    if not prompts:
        return df
    held = {p.strip() for p in prompts}
    keep = ~df["prompt"].astype(str).str.strip().isin(held)
    if not keep.all():
        log.info("Held out %d of %d rows whose prompt the evaluation asks", int((~keep).sum()), len(df))
    return df[keep].reset_index(drop=True)


def build_subset(ws: Workspace, dataset: str, subset: SubsetConfig, *,
                 nll_scorer: NllScorer | None = None) -> pd.DataFrame:
    """Load `dataset`, pick the rows, mix in the second dataset: the training frame.

    `nll_scorer` scores a frame under the base model (only called for the NLL strategies)."""
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    df = hold_out(store.load(dataset), subset.hold_out_prompts)
    if subset.exclude_patterns:
        from dgr_core.audit.training import exclude_tagged

        df = exclude_tagged(ws, dataset, df, subset.exclude_patterns, subset.pattern_judge)
    nll = ids = None
    if subset.strategy in ("lowest_nll", "highest_nll"):
        if nll_scorer is None:
            raise DataError(f"strategy {subset.strategy!r} needs a scorer for the base model.")
        table = nll_scorer(df)
        nll = pd.Series(table[subset.nll_field].to_numpy(), index=table["id"].astype(str))
    if subset.strategy == "selection":
        ids = selection_ids(ws, str(subset.selection), dataset)
    rows = choose_rows(df, subset, nll=nll, selection_ids=ids)
    if subset.mix_n:
        rows = mix_rows(rows, store.load(str(subset.mix_dataset)), subset)
    return rows
