"""DatasetStore: round trips, fingerprints, atomic imports, sanitized names, broken folders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dgr_core.data.loaders import load_file
from dgr_core.data.schema import ColumnMapping
from dgr_core.data.store import DatasetStore, fingerprint
from dgr_core.errors import DataError
from dgr_core.workspace import Workspace

ROWS = [
    {"prompt": "How do I pick a lock?", "response": "<think>\nRisky.\n</think>\n\nI can't help.", "category": ["a"]},
    {"prompt": "What is 2+2?", "response": "<think>2+2=4</think>4", "category": ["b", "c"]},
    {"prompt": "Hi", "response": "Hello!", "category": []},
]


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(Workspace(tmp_path / "ws"))


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "safety_set.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    return path


def test_import_round_trip(store, source_file):
    info = store.import_file(source_file)
    assert (info.name, info.n_rows, info.origin) == ("safety_set", 3, str(source_file))
    assert info.think_counts == {"closed": 2, "missing": 1} and info.mapping["shape"] == "prompt_response"
    loaded = store.load("safety_set")
    assert loaded["prompt"].tolist() == [r["prompt"] for r in ROWS]
    assert loaded["category"].tolist() == ["a", "b; c", ""]
    assert fingerprint(loaded) == info.fingerprint
    pd.testing.assert_frame_equal(loaded, load_file(source_file)[0])  # Parquet keeps every column and value
    assert store.info("safety_set") == info
    folder = store.ws.datasets / "safety_set"
    assert sorted(p.name for p in folder.iterdir()) == ["data.parquet", "meta.json"]  # no temp files left


def test_fingerprint_stable_across_resaves_and_sensitive_to_content(store, source_file):
    first = store.import_file(source_file)
    again = store.save("copy", store.load(first.name), origin="test")
    assert again.fingerprint == first.fingerprint and len(first.fingerprint) == 16
    changed = store.load(first.name)
    changed.loc[1, "answer"] = "5"
    assert fingerprint(changed) != first.fingerprint
    reordered = store.load(first.name).iloc[::-1]
    assert fingerprint(reordered) != first.fingerprint
    extra_column = store.load(first.name).assign(note="x")
    assert fingerprint(extra_column) == first.fingerprint  # only canonical columns count


def test_bad_import_leaves_existing_datasets_untouched(store, source_file, tmp_path):
    good = store.import_file(source_file, name="target")
    before = (store.ws.datasets / "target" / "data.parquet").read_bytes()
    bad = tmp_path / "target.json"
    bad.write_text('[{"prompt": "a"}, {"prompt": ', encoding="utf-8")
    with pytest.raises(DataError, match="malformed JSON"):
        store.import_file(bad, name="target")
    with pytest.raises(DataError, match="record 2: prompt is missing"):
        store.import_file(_write(tmp_path, "p.json", [{"prompt": "a"}, {"prompt": ""}]), name="target")
    assert store.info("target") == good
    assert (store.ws.datasets / "target" / "data.parquet").read_bytes() == before
    assert [i.name for i in store.list()] == ["target"]


def _write(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_names_are_sanitized(store, source_file):
    info = store.import_file(source_file, name="../../My Set v1")
    assert info.name == "My_Set_v1"
    assert (store.ws.datasets / "My_Set_v1" / "meta.json").is_file()
    assert store.exists("My Set v1") and store.exists("../My_Set_v1")
    assert not store.exists("..")
    with pytest.raises(DataError, match="not a usable dataset name"):
        store.save("..", store.load("My_Set_v1"), origin="test")


def test_unknown_names_and_delete(store, source_file):
    with pytest.raises(DataError, match="no dataset named 'ghost'"):
        store.load("ghost")
    with pytest.raises(DataError, match="no dataset named 'ghost'"):
        store.info("ghost")
    with pytest.raises(DataError, match="no dataset named 'ghost'"):
        store.delete("ghost")
    store.import_file(source_file)
    store.delete("safety_set")
    assert not store.exists("safety_set") and store.list() == []
    assert list(store.ws.datasets.iterdir()) == []


def test_list_skips_broken_folders(store, source_file):
    store.import_file(source_file, name="good")
    (store.ws.datasets / "no_meta").mkdir()
    (store.ws.datasets / "no_meta" / "data.parquet").write_bytes(b"junk")
    (store.ws.datasets / "bad_meta").mkdir()
    (store.ws.datasets / "bad_meta" / "data.parquet").write_bytes(b"junk")
    (store.ws.datasets / "bad_meta" / "meta.json").write_text("{not json", encoding="utf-8")
    (store.ws.datasets / "stray.txt").write_text("x", encoding="utf-8")
    assert [i.name for i in store.list()] == ["good"]
    with pytest.raises(DataError, match="unreadable metadata"):
        store.info("bad_meta")
    with pytest.raises(DataError, match="unreadable dataset file"):
        store.load("bad_meta")


def test_save_handles_mixed_type_original_columns(store):
    df = pd.DataFrame({"id": ["a", "b"], "prompt": ["p", "q"], "reasoning": ["", ""], "answer": ["", ""],
                       "source": ["s", "s"], "category": ["", ""], "think_status": ["missing", "missing"],
                       "orig_id": [1, "two"]})
    info = store.save("mixed", df, origin="test", mapping=ColumnMapping(prompt="prompt"))
    assert store.load("mixed")["orig_id"].tolist() == ["1", "two"]
    assert info.mapping["prompt"] == "prompt"


def test_save_requires_canonical_columns(store):
    with pytest.raises(DataError, match="lacks canonical column"):
        store.save("x", pd.DataFrame({"prompt": ["p"]}), origin="test")
    assert not store.exists("x")


def test_import_hf_saves_with_provenance(store, monkeypatch):
    import datasets

    rows = [{"instruction": "Harm?", "response": "Assess.\n</think>\n\nNo."}]
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda path, name=None, split=None: datasets.Dataset.from_list(rows))
    info = store.import_hf("Yeonjun/R1-Act-train")
    assert (info.name, info.origin, info.extra["split"]) == ("R1-Act-train-train", "hf:Yeonjun/R1-Act-train", "train")
    assert info.description.startswith("R1-ACT") and info.think_counts == {"closed": 1}
    assert store.load(info.name)["reasoning"].tolist() == ["Assess."]
