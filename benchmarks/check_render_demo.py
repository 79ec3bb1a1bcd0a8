"""Scores of the demo model on the first rows of the two demo datasets, to compare two versions of the code.

The renderer change (dgr_core/render.py) must leave SmolLM2 (no think support) byte-identical; this prints the
per-sample NLLs so a run with the old code and one with the new code can be diffed. Each run uses its own fresh
workspace (its score cache is empty) sharing the converted demo model:

    cd /work/main && .venv/bin/python /work/wt-render/benchmarks/check_render_demo.py /tmp/before > before.json
    cd /work/wt-render && PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/check_render_demo.py /tmp/after > after.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(home: Path, n: int = 6) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to((REPO / "cache" / "models").resolve(), target_is_directory=True)
    os.environ["DGR_HOME"], os.environ["HF_HUB_OFFLINE"] = str(home), "1"
    import dgr_core
    from dgr_core.data.demo import DEMO_EXTERNAL, DEMO_GSM8K, ensure_demo_datasets
    from dgr_core.data.store import DatasetStore
    from dgr_core.models.loading import ModelSpec
    from dgr_core.scoring.api import ScoreConfig, score_frame
    from dgr_core.workspace import Workspace

    ws = Workspace(home)
    ensure_demo_datasets(ws)
    out: dict = {"code": dgr_core.__file__}
    for name in (DEMO_EXTERNAL, DEMO_GSM8K):
        df = DatasetStore(ws).load(name).head(n)
        table = score_frame(ws, df, ScoreConfig(model=ModelSpec("demo", dtype="float32"))).table
        out[name] = table[["id", "nll_reasoning", "nll_answer", "nll_total", "n_tokens_total"]].to_dict("records")
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=1))
