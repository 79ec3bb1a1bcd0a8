"""Where audit results live: a content-addressed per-sample cache, and one tag table per (dataset, judge).

    audits/cache/<op key>/meta.json              operation, version, judge identity, template hash, settings
    audits/cache/<op key>/chunks/<n>-<id>.jsonl  one JSON line per sample (sample_key, status, flags, analysis,
                                                 reason, attempts, raw); written atomically, so a file that
                                                 exists is complete; later chunks override earlier ones
    audits/datasets/<dataset>/<judge slug>/tags.parquet   id + flags + status of every row of the dataset
    audits/datasets/<dataset>/<judge slug>/meta.json      judge label, op key, dataset fingerprint, counts
                                                          (written after tags.parquet: its presence = complete)

The op key is sha256 over canonical JSON of everything but the sample text (as for scores); a sample's key is
sha256(op key + its text hash, `dgr_core.scoring.api.text_hash`), so re-auditing a refined dataset judges only the
rows whose text changed, and a killed job resumes from its finished chunks.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.errors import DataError
from dgr_core.scoring.cache import op_key, sha256
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

AUDITS_DIR = "audits"


def audits_root(ws: Workspace) -> Path:
    path = Path(ws.root) / AUDITS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def judge_slug(label: str) -> str:
    """A folder name for a judge label ("heuristic", "judge:Qwen/Qwen3-8B" -> "judge_Qwen_Qwen3-8B")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "judge"


class AuditCache:
    """One judge configuration's verdicts, looked up by sample key."""

    def __init__(self, ws: Workspace, meta: dict[str, Any]):
        self.key = op_key(meta)
        self.dir = audits_root(ws) / "cache" / self.key
        self.chunks = self.dir / "chunks"
        self.chunks.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "meta.json").is_file():
            atomic_write_json(self.dir / "meta.json", {"op_key": self.key, **meta})
        self._records: dict[str, dict[str, Any]] | None = None

    def records(self) -> dict[str, dict[str, Any]]:
        if self._records is None:
            self._records = {}
            for path in sorted(self.chunks.glob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        rec = json.loads(line)
                        self._records[rec["sample_key"]] = rec
        return self._records

    def missing(self, keys: list[str], *, retry_unparsable: bool = False) -> list[str]:
        recs = self.records()
        return [k for k in keys if k not in recs or (retry_unparsable and recs[k].get("status") != "ok")]

    def add(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        stamp = f"{time.time_ns():020d}"
        chunk = sha256("|".join(r["sample_key"] for r in records))[:12]
        body = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        atomic_write_bytes(self.chunks / f"{stamp}-{chunk}.jsonl", body.encode("utf-8"))
        recs = self.records()
        recs.update({r["sample_key"]: r for r in records})


# ---------------------------------------------------------------- per-dataset tag tables


@dataclass
class AuditInfo:
    """One finished audit of one dataset, as the pages list it."""

    dataset: str
    judge: str  # "heuristic" or "judge:<model ref>"
    meta: dict[str, Any]
    dir: Path

    @property
    def is_heuristic(self) -> bool:
        return self.judge == "heuristic"

    def is_stale(self, fingerprint: str) -> bool:
        return self.meta.get("fingerprint") != fingerprint

    def tags(self) -> pd.DataFrame:
        return pd.read_parquet(self.dir / "tags.parquet")


def save_tags(ws: Workspace, dataset: str, judge: str, tags: pd.DataFrame, meta: dict[str, Any]) -> AuditInfo:
    folder = audits_root(ws) / "datasets" / dataset / judge_slug(judge)
    buf = io.BytesIO()
    tags.reset_index(drop=True).to_parquet(buf, index=False)
    atomic_write_bytes(folder / "tags.parquet", buf.getvalue())
    full = {"dataset": dataset, "judge": judge, **meta}
    atomic_write_json(folder / "meta.json", full)
    return AuditInfo(dataset, judge, full, folder)


def list_audits(ws: Workspace, dataset: str) -> list[AuditInfo]:
    """The finished audits of `dataset`, the heuristic first, then by judge label."""
    base = audits_root(ws) / "datasets" / dataset
    found = []
    for meta_path in sorted(base.glob("*/meta.json")) if base.is_dir() else []:
        meta = read_json(meta_path)
        if (meta_path.parent / "tags.parquet").is_file():
            found.append(AuditInfo(dataset, str(meta.get("judge")), meta, meta_path.parent))
    return sorted(found, key=lambda a: (not a.is_heuristic, a.judge))


def get_audit(ws: Workspace, dataset: str, judge: str) -> AuditInfo:
    for info in list_audits(ws, dataset):
        if info.judge == judge:
            return info
    raise DataError(f"no {judge!r} audit of dataset {dataset!r}: run `dgr audit --dataset {dataset} "
                    f"--judge {judge.removeprefix('judge:')}` (or the Audit tab of the Datasets page).")


def load_tags(ws: Workspace, dataset: str, judge: str | None = None) -> pd.DataFrame | None:
    """The tag table of `dataset` by `judge` (default: the first listed, the heuristic if there), or None."""
    audits = list_audits(ws, dataset)
    if judge is not None:
        audits = [a for a in audits if a.judge == judge]
    return audits[0].tags() if audits else None
