"""Named subsets saved from the shift map: one readable JSON file each, round-tripping, validated against the
dataset, marked stale when the dataset changes, and read by training's `selection` subset strategy."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError
from dgr_core.shift.selections import (
    Selection,
    delete_selection,
    list_selections,
    load_selection,
    save_selection,
    selection_name,
)
from dgr_core.train import data as train_data
from dgr_core.train.config import SubsetConfig


def _dataset(ws, name: str = "star", n: int = 8) -> pd.DataFrame:
    df = pd.DataFrame({"id": [f"{name}-{i}" for i in range(n)], "prompt": [f"prompt {i}" for i in range(n)],
                       "reasoning": "r", "answer": [f"answer {i}" for i in range(n)], "source": "t",
                       "category": ["a", "b"] * (n // 2)})
    DatasetStore(ws).save(name, df, origin="test")
    return df


def test_saved_selection_round_trips_through_a_readable_file(ws):
    _dataset(ws)
    saved = save_selection(ws, "far out", "star", ["star-5", "star-1", "star-5", "star-3"], note="high ΔNLL",
                           extra={"from": "shift map", "segment": "answer"})
    assert saved.name == "far_out" and saved.ids == ["star-5", "star-1", "star-3"] and saved.n == 3
    on_disk = json.loads((ws.selections / "far_out.json").read_text(encoding="utf-8"))
    assert on_disk["ids"] == saved.ids and on_disk["dataset"] == "star" and on_disk["n"] == 3
    assert on_disk["created_at"].endswith("+00:00")  # UTC-aware
    for name in ("far out", "far_out"):
        back = load_selection(ws, name)
        assert back == saved and isinstance(back, Selection)
    assert Selection.from_dict(saved.to_dict()) == saved
    assert not back.is_stale(ws)


def test_saving_under_a_name_replaces_and_list_filters_by_dataset(ws):
    _dataset(ws)
    _dataset(ws, "other")
    save_selection(ws, "pick", "star", ["star-0"])
    save_selection(ws, "pick", "star", ["star-1", "star-2"])
    save_selection(ws, "theirs", "other", ["other-0"])
    (ws.selections / "broken.json").write_text("{not json", encoding="utf-8")
    assert [s.name for s in list_selections(ws)] == ["pick", "theirs"]
    assert load_selection(ws, "pick").ids == ["star-1", "star-2"]
    assert [s.name for s in list_selections(ws, "other")] == ["theirs"]
    delete_selection(ws, "pick")
    assert [s.name for s in list_selections(ws)] == ["theirs"]
    with pytest.raises(DataError, match="no selection named"):
        load_selection(ws, "pick")


def test_bad_selections_are_clear_errors(ws):
    _dataset(ws)
    with pytest.raises(DataError, match="not in dataset"):
        save_selection(ws, "x", "star", ["star-1", "nope"])
    with pytest.raises(DataError, match="no samples"):
        save_selection(ws, "x", "star", [])
    with pytest.raises(DataError, match="missing"):
        save_selection(ws, "x", "missing", ["a"])
    with pytest.raises(DataError):
        selection_name("///")
    assert list_selections(ws) == []


def test_selection_goes_stale_when_its_dataset_changes(ws):
    df = _dataset(ws)
    sel = save_selection(ws, "s", "star", ["star-1"])
    assert not sel.is_stale(ws)
    DatasetStore(ws).save("star", df.assign(answer="rewritten"), origin="test")
    assert sel.is_stale(ws)
    DatasetStore(ws).delete("star")
    assert sel.is_stale(ws)


def test_training_reads_the_saved_selection(ws):
    _dataset(ws)
    save_selection(ws, "lasso 1", "star", ["star-6", "star-2", "star-4"])
    assert train_data.list_selections(ws, "star") == ["lasso_1"]
    assert train_data.selection_ids(ws, "lasso_1", "star") == ["star-6", "star-2", "star-4"]
    rows = train_data.build_subset(ws, "star", SubsetConfig(strategy="selection", selection="lasso_1"))
    assert rows["id"].tolist() == ["star-6", "star-2", "star-4"]
    _dataset(ws, "other")
    with pytest.raises(DataError, match="belongs to dataset 'star'"):
        train_data.build_subset(ws, "other", SubsetConfig(strategy="selection", selection="lasso_1"))
