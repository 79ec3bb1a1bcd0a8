"""Hand-labelled traces for checking a judge: read a labels file (JSON lines of id + the five 0/1 patterns + why)
and rebuild each row's text from the shared datasets, so the labels file carries no copied text.

A label row names its `source`: "STAR-1" (a STAR-1 id), "nocot" (a No-CoT split id as the loader assigns it,
`sft_train_nocot-00000`), or "constructed" with `from` = {"prompt": id, "reasoning": id, "answer": id}: fields
recombined from those rows (to have positives for patterns the curated data lacks, e.g. an answer that contradicts
its trace). An optional `split` = "heldout" marks rows labelled after the heuristic's rules were final (never used
to revise them). The project's own set is tests/data/audit_labelled.jsonl; `benchmarks/bench_audit.py` reports the
heuristic's precision / recall on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dgr_core.audit.patterns import PATTERNS
from dgr_core.errors import DataError

SOURCES = {"STAR-1": "STAR-1/data/STAR-1.json",
           "nocot": "LRM-Safety-Study/dataset/data/sft_train_nocot.json"}


def read_labels(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows)


def source_rows(shared: Path) -> dict[str, dict]:
    """Every canonical row of the labelled sources, by id (STAR-1 and No-CoT ids do not collide)."""
    from dgr_core.data.loaders import load_file

    out: dict[str, dict] = {}
    for rel in SOURCES.values():
        df, _ = load_file(Path(shared) / rel)
        out.update({str(r["id"]): r for r in df.to_dict("records")})
    return out


def labelled_frame(labels_path: Path, shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(canonical rows to audit, gold tags: id + PATTERNS), in the labels file's order."""
    labels = read_labels(labels_path)
    pool = source_rows(shared)
    rows = []
    for rec in labels.to_dict("records"):
        parts = rec.get("from") if rec["source"] == "constructed" else None
        parts = parts if isinstance(parts, dict) else dict.fromkeys(("prompt", "reasoning", "answer"), rec["id"])
        missing = [i for i in parts.values() if str(i) not in pool]
        if missing:
            raise DataError(f"labelled row {rec['id']}: no row {missing[0]!r} in the shared data.")
        base = pool[str(parts["reasoning"])]
        rows.append({**base, "id": rec["id"], "prompt": pool[str(parts["prompt"])]["prompt"],
                     "answer": pool[str(parts["answer"])]["answer"], "source": rec["source"]})
    gold = labels[["id", *PATTERNS]].astype({p: int for p in PATTERNS})
    return pd.DataFrame(rows), gold
