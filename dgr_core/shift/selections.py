"""Named subsets of a dataset (e.g. a lasso selection on the shift map), saved for training to use later.

Each selection is one JSON file `<workspace>/selections/<name>.json` a person can open:

    {"name": "far-out-refusals", "dataset": "star1", "ids": ["star1-12", ...], "note": "...",
     "created_at": "2025-...Z", "dataset_fingerprint": "…", "n": 37}

    from dgr_core.shift.selections import save_selection, load_selection, list_selections
    save_selection(ws, "far out", "star1", ["star1-12", "star1-40"], note="high ΔNLL cluster")
    sel = load_selection(ws, "far_out")        # names are sanitized: "far out" is stored as "far_out"
    df = DatasetStore(ws).load(sel.dataset); subset = df[df["id"].astype(str).isin(sel.ids)]

Saving under an existing name replaces it (atomic write). The dataset's fingerprint at save time is kept so a
reader can tell when the dataset changed since (`Selection.is_stale`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from dgr_core.config import Config
from dgr_core.data.loaders import safe_name
from dgr_core.errors import DataError
from dgr_core.workspace import Workspace, atomic_write_json, read_json


@dataclass
class Selection(Config):
    """A named list of sample ids of one dataset."""

    strict_keys: ClassVar[bool] = False  # a record on disk; its "n" is derived

    name: str
    dataset: str
    ids: list[str]
    note: str = ""
    created_at: str = ""
    dataset_fingerprint: str | None = None  # fingerprint of the dataset when the selection was saved
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (e.g. which map, which filter)

    @property
    def n(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "n": self.n}

    def is_stale(self, ws: Workspace) -> bool:
        """True when the dataset changed (or vanished) since the selection was saved."""
        from dgr_core.data.store import DatasetStore

        store = DatasetStore(ws)
        if not store.exists(self.dataset):
            return True
        return self.dataset_fingerprint is not None and store.info(self.dataset).fingerprint != self.dataset_fingerprint


def selection_name(name: str) -> str:
    """The sanitized file-safe name a selection is stored under (DataError if nothing usable is left)."""
    return safe_name(name, what="selection name")


def _path(ws: Workspace, name: str) -> Path:
    return ws.selections / f"{selection_name(name)}.json"


def save_selection(ws: Workspace, name: str, dataset: str, ids: list[str], note: str = "",
                   extra: dict[str, Any] | None = None) -> Selection:
    """Save (or replace) a selection. Ids must exist in the dataset; duplicates are dropped, order kept."""
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    info = store.info(dataset)  # DataError naming the dataset if it is unknown
    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted:
        raise DataError(f"selection '{name}': no samples selected")
    known = set(store.load(dataset)["id"].astype(str))
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise DataError(f"selection '{name}': {len(unknown)} id(s) are not in dataset '{dataset}', "
                        f"e.g. {unknown[:3]}")
    sel = Selection(name=selection_name(name), dataset=info.name, ids=wanted, note=note,
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    dataset_fingerprint=info.fingerprint, extra=dict(extra or {}))
    atomic_write_json(_path(ws, name), sel.to_dict())
    return sel


def load_selection(ws: Workspace, name: str) -> Selection:
    """A saved selection by name (sanitized the same way as when saving)."""
    path = _path(ws, name)
    if not path.is_file():
        raise DataError(f"no selection named '{name}' in {ws.selections}")
    try:
        return Selection.from_dict(read_json(path))
    except (ValueError, TypeError) as exc:
        raise DataError(f"unreadable selection: {exc}", file=str(path)) from None


def list_selections(ws: Workspace, dataset: str | None = None) -> list[Selection]:
    """Every readable selection (optionally of one dataset), by name; broken files are skipped."""
    out = []
    for path in sorted(ws.selections.glob("*.json")):
        try:
            sel = Selection.from_dict(read_json(path))
        except (OSError, ValueError, TypeError):
            continue
        if dataset is None or sel.dataset == dataset:
            out.append(sel)
    return out


def delete_selection(ws: Workspace, name: str) -> None:
    path = _path(ws, name)
    if not path.is_file():
        raise DataError(f"no selection named '{name}' in {ws.selections}")
    path.unlink()


# ---- selections on the map (Plotly box / lasso) ------------------------------------------------------------

def selection_ids(points: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Plotly selection points (with customdata [dataset, id]) grouped as dataset -> ids, in selection order."""
    out: dict[str, list[str]] = {}
    for p in points or []:
        data = p.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) >= 2:
            ids = out.setdefault(str(data[0]), [])
            if str(data[1]) not in ids:
                ids.append(str(data[1]))
    return out


def filter_points(points: pd.DataFrame, selected: dict[str, list[str]]) -> pd.DataFrame:
    """The rows of a `map_points` table whose (dataset, id) is in `selected`; all rows when nothing is selected."""
    if not any(selected.values()):
        return points
    wanted = pd.MultiIndex.from_tuples([(d, str(i)) for d, ids in selected.items() for i in ids])
    keys = pd.MultiIndex.from_arrays([points["dataset"].astype(str), points["id"].astype(str)])
    return points[keys.isin(wanted)]
