"""A fresh temporary workspace for a benchmark run, reusing the repo's converted demo model (nothing else cached).

    from _workspace import fresh_workspace   # benchmarks/ is on sys.path when a benchmark script runs
"""

from __future__ import annotations

import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_workspace(prefix: str) -> Path:
    """`<tmp>/home` with `models` linked to the repo's cache/models; the folder is kept for inspection."""
    home = Path(tempfile.mkdtemp(prefix=prefix)) / "home"
    home.mkdir(parents=True)
    (REPO / "cache" / "models").mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(REPO / "cache" / "models", target_is_directory=True)
    return home
