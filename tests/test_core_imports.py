"""The engine never imports Streamlit: every `dgr_core` module is imported in a fresh interpreter, and afterwards
`streamlit` must not be in sys.modules (directly or through a dependency)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import dgr_core

REPO = Path(__file__).resolve().parents[1]

# Importing every module, then reporting what failed and whether streamlit came along.
PROBE = """
import importlib, json, pkgutil, sys
import dgr_core
failed = {}
names = [m.name for m in pkgutil.walk_packages(dgr_core.__path__, "dgr_core.")
         if not m.name.endswith(".__main__")]  # __main__ runs a job when imported
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(json.dumps({"names": names, "failed": failed,
                  "streamlit": sorted(m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))}))
"""


def test_every_core_module_imports_without_streamlit():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {m.name for m in pkgutil.walk_packages(dgr_core.__path__, "dgr_core.")} - {"dgr_core.jobs.__main__"}
    assert set(report["names"]) == expected and "dgr_core.data.stats" in expected
    assert report["failed"] == {}
    assert report["streamlit"] == [], f"dgr_core imported streamlit: {report['streamlit'][:5]}"


def test_no_core_source_mentions_streamlit_imports():
    """A cheap second line of defence: no `import streamlit` anywhere in the engine's source, even in functions
    the probe above never calls."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "dgr_core").rglob("*.py")
                 if any(line.strip().startswith(("import streamlit", "from streamlit"))
                        for line in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == []
