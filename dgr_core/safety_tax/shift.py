"""The shift of a run's training data, read from the score cache (never computed here).

    reader = ScoreReader(ws, backend="hf")        # one per `collect`: datasets and lookups are memoized
    why = add_shift(reader, rec, reference="demo-self-generated")    # fills rec.shift; "" when it could

The shift is measured *under the base model* (the model being fine-tuned is the one whose distribution matters):
the mean per-token NLL of the run's training samples, by segment (total, reasoning, answer), and, when a reference
dataset is chosen (e.g. the model's self-generated answers, scored under the same model), the
ΔNLL = mean NLL(training samples) − mean NLL(reference). A run whose samples are not all in the cache gets no shift
and a reason ("not scored yet"); `collect` lists it in `SafetyTaxData.unscored`. No model weights are loaded:
finding the exact cache entry of an `hf` model reads its tokenizer and hashes its weight files (memoized), and a
scan of the score stores by model ref works without the model at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.models.loading import ModelSpec
from dgr_core.safety_tax.records import SEGMENTS, RunRecord
from dgr_core.workspace import Workspace, read_json


def add_shift(reader: ScoreReader, rec: RunRecord, reference: str | None) -> str:
    """Fill `rec.shift`; returns why it could not (empty string when it could)."""
    base = ModelSpec.from_dict(rec.base_spec) if rec.base_spec else ModelSpec(rec.base_model)
    table, op, why = reader.scores(rec.dataset, rec.sample_ids, base)
    if table is None:
        return why
    rec.shift_store = op
    means = {s: _nanmean(table[f"nll_{s}"]) for s in SEGMENTS}
    rec.shift.update({f"nll_{s}": v for s, v in means.items()})
    if not reference:
        return ""
    ref_table, _, ref_why = reader.scores(reference, None, base)
    if ref_table is None:
        return f"reference {ref_why}"
    rec.shift.update({f"delta_nll_{s}": means[s] - _nanmean(ref_table[f"nll_{s}"]) for s in SEGMENTS})
    return ""


def _nanmean(values: pd.Series) -> float:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


Found = tuple[pd.DataFrame, str] | None  # (per-sample score table with an id column, op key)


class ScoreReader:
    """Per-sample scores of datasets under a model, read from the score cache (never computed).

    First the exact cache entry for the default ScoreConfig (`dgr_core.shift.analysis.load_scores`, which derives
    the model's cache identity from its tokenizer and weight files); if that module is missing or the entry is
    incomplete, any score store of the same model ref and backend that holds every needed sample (`_scan`).
    Datasets, lookups and store indexes are memoized per reader: many runs share a dataset and a base model."""

    def __init__(self, ws: Workspace, backend: str):
        self.ws, self.backend, self.store = ws, backend, DatasetStore(ws)
        self._frames: dict[str, pd.DataFrame] = {}
        self._exact_memo: dict[tuple[str, ModelSpec], Found] = {}
        self._stores: dict[str, Any] = {}

    def scores(self, dataset: str, sample_ids: list[str] | None,
               base: ModelSpec) -> tuple[pd.DataFrame | None, str, str]:
        """(scores of the rows `sample_ids` (None = all) of `dataset` under `base`, op key, why missing)."""
        if not self.store.exists(dataset):
            return None, "", f"dataset {dataset!r} is not in the workspace"
        if dataset not in self._frames:
            self._frames[dataset] = self.store.load(dataset)
        df = self._frames[dataset]
        if sample_ids is not None:
            df = df[df["id"].astype(str).isin(set(sample_ids))]
        if df.empty:
            return None, "", f"none of the training samples are in dataset {dataset!r}"
        found = self._exact(dataset, base)
        if found is not None:
            table = found[0][found[0]["id"].astype(str).isin(set(df["id"].astype(str)))]
            found = (table.reset_index(drop=True), found[1]) if len(table) == len(df) else None
        found = found or self._scan(df, base)
        if found is None:
            return None, "", (f"{dataset!r} is not scored under {base.ref!r} (backend {self.backend}): score it "
                              "on the Shift page")
        return found[0], found[1], ""

    def _exact(self, dataset: str, base: ModelSpec) -> Found:
        key = (dataset, base)
        if key not in self._exact_memo:  # failures are memoized too: a missing model is slow to find missing
            self._exact_memo[key] = self._load_exact(dataset, base)
        return self._exact_memo[key]

    def _load_exact(self, dataset: str, base: ModelSpec) -> Found:
        try:
            from dgr_core.scoring.api import ScoreConfig
            from dgr_core.shift.analysis import load_scores

            result = load_scores(self.ws, dataset, ScoreConfig(model=base, backend=self.backend))
        except (ImportError, DGRError, OSError, ValueError):  # module not there yet, or model files unreadable
            return None
        return None if result is None else (result.table, result.store.key)

    def _scan(self, df: pd.DataFrame, base: ModelSpec) -> Found:
        """Scores from any store of this model ref and backend that covers every row (chat mode first, then
        newest). Matching on the ref, not the weights hash, is what makes this work without the model, at the
        price that a model replaced under the same path would match its old scores: the op key is recorded."""
        from dgr_core.scoring.api import text_hash
        from dgr_core.scoring.cache import sample_key

        rows = df.to_dict("records")
        for cache in self._candidates(base.ref):
            keys = [sample_key(cache.key, text_hash(r)) for r in rows]
            if cache.missing(keys):
                continue
            table = cache.table(keys)
            table.insert(0, "id", [str(r["id"]) for r in rows])
            return table, cache.key
        return None

    def _candidates(self, ref: str) -> list[Any]:
        found = []
        for meta_path in self.ws.scores.glob("*/meta.json"):
            try:
                meta = read_json(meta_path)
            except ValueError:
                continue
            model = meta.get("model") if isinstance(meta, dict) else None
            if meta.get("operation") != "score" or not isinstance(model, dict):
                continue
            if model.get("ref") == ref and model.get("backend") == self.backend:
                chat = (meta.get("settings") or {}).get("mode") == "chat"
                found.append((not chat, -meta_path.stat().st_mtime, str(meta_path)))
        stores = (self._open(path) for *_, path in sorted(found))
        return [s for s in stores if s is not None]

    def _open(self, meta_path: str) -> Any:
        from dgr_core.scoring.cache import ScoreStore, op_key

        if meta_path not in self._stores:
            meta = {k: v for k, v in read_json(Path(meta_path)).items() if k != "op_key"}
            # A meta.json that does not hash to its folder is not a store this code wrote: opening it would
            # create a new folder instead.
            ok = op_key(meta) == Path(meta_path).parent.name
            self._stores[meta_path] = ScoreStore(self.ws.scores, meta) if ok else None
        return self._stores[meta_path]
