"""The workspace: DGR_HOME overrides the default folder, sub-folders appear on first use, writes are atomic (a
failed write leaves the old file and no temp file), JSON round-trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dgr_core import workspace as W
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json


def test_dgr_home_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DGR_HOME", str(tmp_path / "elsewhere" / ".." / "home"))
    assert Workspace.default().root == (tmp_path / "home").resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DGR_HOME", "~/dgr")
    assert W.default_home() == (tmp_path / "dgr").resolve()
    monkeypatch.delenv("DGR_HOME")
    assert Workspace.default().root == W.REPO_ROOT / "cache"


def test_folders_are_created_on_first_use(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert not (tmp_path / "ws").exists()
    for name in ("datasets", "scores", "models", "runs", "selections", "uploads"):
        folder = getattr(ws, name)
        assert folder == tmp_path / "ws" / name and folder.is_dir()


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "deep" / "er" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    atomic_write_json(target, {"state": "running"})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"state": "done"})
    assert read_json(target) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # the temp file was removed


def test_an_interrupted_write_never_shows_half_a_file(tmp_path, monkeypatch):
    """The data goes to a temp file first: until the rename, readers see the old content."""
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(dst).read_bytes(), Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(target, b"new" * 1000)
    assert seen == [(b"old", b"new" * 1000)] and target.read_bytes() == b"new" * 1000


def test_json_round_trip_is_utf8_sorted_and_readable(tmp_path):
    obj = {"b": [1, 2.5, None], "a": "Café 日本語 🙂", "when": Path("/x")}
    path = tmp_path / "meta.json"
    atomic_write_json(path, obj)
    text = path.read_text(encoding="utf-8")
    assert text.index('"a"') < text.index('"b"')  # sorted keys: stable diffs
    assert read_json(path) == {"a": "Café 日本語 🙂", "b": [1, 2.5, None], "when": "/x"}  # default=str
    with pytest.raises(json.JSONDecodeError):
        path.write_text("{broken", encoding="utf-8")
        read_json(path)
