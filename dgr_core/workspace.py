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
