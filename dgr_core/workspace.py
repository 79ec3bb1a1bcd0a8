"""The workspace: one folder that holds datasets, score caches, models and runs.

Default `<repo>/cache` (git-ignored); the environment variable DGR_HOME overrides it. Every artifact in it is a
file a person can open (JSON, JSONL, Parquet, NumPy arrays), written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_home() -> Path:
    """DGR_HOME if set, else the repo's `cache/` folder."""
    env = os.environ.get("DGR_HOME")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "cache"


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Folders are created on first use."""

    root: Path

    @classmethod
    def default(cls) -> Workspace:
        return cls(default_home())

    def _sub(self, name: str) -> Path:
        path = Path(self.root) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def datasets(self) -> Path:
        return self._sub("datasets")

    @property
    def scores(self) -> Path:
        return self._sub("scores")

    @property
    def models(self) -> Path:
        return self._sub("models")

    @property
    def runs(self) -> Path:
        return self._sub("runs")

    @property
    def selections(self) -> Path:
        return self._sub("selections")

    @property
    def uploads(self) -> Path:
        return self._sub("uploads")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- append-only JSON Lines
# A process killed in the middle of an append leaves a torn last line. The next append would glue its record
# onto that fragment and both would be lost; so every append first cuts the file back to its last newline, and
# every reader skips a line that does not parse (it may be the one being written right now).


def repair_jsonl(path: Path) -> int:
    """Truncate a torn last line (no final newline) away; returns the number of bytes removed (0 if intact)."""
    path = Path(path)
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return 0
    with fh:
        size = fh.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            step = min(65536, end)
            fh.seek(end - step)
            chunk = fh.read(step)
            if end == size and chunk.endswith(b"\n"):
                return 0
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                end = end - step + cut + 1
                break
            end -= step
        fh.truncate(end)
        fh.flush()
        os.fsync(fh.fileno())
        return size - end


def append_jsonl(path: Path, records: Any, *, fsync: bool = True) -> None:
    """Append one record (a dict) or several as JSON lines, after repairing a torn last line; flushed to disk
    (fsync) unless asked not to, so a kill after this returns loses nothing."""
    rows = [records] if isinstance(records, dict) else list(records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl(path)
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[Any]:
    """The records of a JSON Lines file, read line by line; a line that does not parse (torn by a crash, or
    being written right now) is skipped. A missing file has no records."""
    out: list[Any] = []
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    with fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
