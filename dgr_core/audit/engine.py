"""Audit a frame of canonical rows: cached verdicts first, the missing samples judged chunk by chunk.

    from dgr_core.audit.engine import audit_frame
    result = audit_frame(ws, df, AuditConfig(dataset="STAR-1"))            # heuristic, no model
    result = audit_frame(ws, df, AuditConfig(judge="Qwen/Qwen3-8B"))        # a judge model (loads here)
    result.table   # id, status ("ok" | "unparsable"), the five patterns + overthinking (0/1, NA if unparsable),
                   # analysis (the judge's, or the heuristic's evidence), reason, attempts

A judge model gets the template with the sample filled in, greedy decoding, and up to `max_retries` follow-up
turns that name what was wrong with its reply (`template.correction`); a sample still invalid after that is
recorded as "unparsable" with the reason and the raw reply. Every chunk is written to the cache when it is done,
so cancel (checked between chunks) and resume lose at most one chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dgr_core.audit.config import AuditConfig
from dgr_core.audit.heuristic import HEURISTIC_VERSION, heuristic_tags
from dgr_core.audit.patterns import FLAG_KEYS
from dgr_core.audit.store import AuditCache
from dgr_core.audit.template import correction, parse_reply, render_prompt, template_hash
from dgr_core.backends.base import GenerationConfig
from dgr_core.errors import DataError, JobCancelled
from dgr_core.scoring.api import text_hash
from dgr_core.scoring.cache import sample_key
from dgr_core.workspace import Workspace

OPERATION, VERSION = "audit", 1
RAW_CHARS = 2000  # of a judge reply kept in the cache
Progress = Callable[[dict[str, Any]], None]


class HeuristicJudge:
    label = "heuristic"

    def op_meta(self) -> dict[str, Any]:
        return {"operation": OPERATION, "version": VERSION, "judge": {"heuristic": HEURISTIC_VERSION}}

    def judge(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            tags = heuristic_tags(row)
            out.append({"status": "ok", **{k: tags[k] for k in FLAG_KEYS}, "analysis": tags["evidence"],
                        "reason": "", "attempts": 0, "raw": ""})
        return out


class ModelJudge:
    """A chat model that answers the template with the pattern JSON (see the module docstring)."""

    def __init__(self, backend, cfg: AuditConfig):
        self.backend, self.cfg = backend, cfg
        self.template = cfg.effective_template
        self.label = cfg.label
        self.gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0, batch_size=cfg.batch_size)

    def op_meta(self) -> dict[str, Any]:
        identity = {k: v for k, v in self.backend.identity().items() if k not in ("name", "n_params", "architecture")}
        settings = {"max_new_tokens": self.cfg.max_new_tokens, "max_retries": self.cfg.max_retries,
                    "temperature": 0.0}
        return {"operation": OPERATION, "version": VERSION, "judge": {"model": identity},
                "template": template_hash(self.template), "settings": settings}

    def judge(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        convs = [[{"role": "user", "content": render_prompt(self.template, r)}] for r in rows]
        last: list[tuple[Any, Any, int]] = [(None, None, 0)] * len(rows)
        pending = list(range(len(rows)))
        for attempt in range(1, self.cfg.max_retries + 2):
            outputs = self.backend.generate([convs[i] for i in pending], self.gen)
            retry = []
            for i, out in zip(pending, outputs, strict=True):
                parsed = parse_reply(out.text)
                if not parsed.ok and out.finish_reason == "length":
                    parsed.reason += f" (the reply was cut at max_new_tokens={self.cfg.max_new_tokens})"
                last[i] = (parsed, out, attempt)
                if not parsed.ok:
                    convs[i] = [*convs[i], {"role": "assistant", "content": out.text},
                                {"role": "user", "content": correction(parsed.reason)}]
                    retry.append(i)
            pending = retry
            if not pending:
                break
        return [_record(parsed, out, attempts) for parsed, out, attempts in last]


def _record(parsed, out, attempts: int) -> dict[str, Any]:
    flags = parsed.flags if parsed.ok else dict.fromkeys(FLAG_KEYS)
    return {"status": "ok" if parsed.ok else "unparsable", **flags, "analysis": parsed.analysis,
            "reason": parsed.reason, "attempts": attempts, "raw": (out.text or "")[:RAW_CHARS],
            "finish_reason": out.finish_reason}


@dataclass
class AuditResult:
    judge: str  # "heuristic" or "judge:<model>"
    op_key: str
    table: pd.DataFrame
    computed: int  # samples judged in this call (0 = all from the cache)
    seconds: float

    @property
    def n_unparsable(self) -> int:
        return int((self.table["status"] != "ok").sum())


def make_judge(cfg: AuditConfig, ws: Workspace, backend=None):
    if cfg.is_heuristic:
        return HeuristicJudge()
    if backend is None:
        from dgr_core.backends import get_backend

        backend = get_backend(cfg.backend, cfg.model_spec(), ws)
    return ModelJudge(backend, cfg)


def audit_frame(ws: Workspace, df: pd.DataFrame, cfg: AuditConfig, *, backend=None,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> AuditResult:
    """Tag every row of `df` (cache first). `backend` may be passed to reuse a loaded judge model."""
    if df.empty:
        raise DataError("The dataset has no rows to audit.")
    started = time.perf_counter()
    judge = make_judge(cfg, ws, backend)
    cache = AuditCache(ws, judge.op_meta())
    rows = df.to_dict("records")
    keys = [sample_key(cache.key, text_hash(r)) for r in rows]
    missing = set(cache.missing(keys, retry_unparsable=cfg.retry_unparsable))
    todo = [(k, r) for k, r in dict(zip(keys, rows, strict=True)).items() if k in missing]
    _run_chunks(judge, cache, todo, cfg.chunk_size, progress, should_stop)
    table = tag_table(rows, keys, cache.records())
    return AuditResult(judge.label, cache.key, table, len(todo), round(time.perf_counter() - started, 3))


def _run_chunks(judge, cache: AuditCache, todo: list[tuple[str, dict]], chunk_size: int,
                progress: Progress | None, should_stop: Callable[[], bool] | None) -> None:
    start_t, total = time.perf_counter(), len(todo)
    for start in range(0, total, chunk_size):
        if should_stop and should_stop():
            raise JobCancelled(f"Cancelled after {start} of {total} samples; finished chunks are cached: resume "
                               "the run to continue.")
        chunk = todo[start : start + chunk_size]
        records = judge.judge([r for _, r in chunk])
        cache.add([{"sample_key": k, **rec} for (k, _), rec in zip(chunk, records, strict=True)])
        if progress:
            done, elapsed = start + len(chunk), max(time.perf_counter() - start_t, 1e-9)
            rate = done / elapsed
            progress({"done": done, "total": total, "unit": "samples", "samples_per_s": round(rate, 2),
                      "eta_s": round((total - done) / rate, 1), "message": f"auditing ({judge.label})"})


def tag_table(rows: list[dict[str, Any]], keys: list[str], records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per input row: id, sample_key, status, flags (nullable ints), analysis, reason, attempts."""
    out = []
    for row, key in zip(rows, keys, strict=True):
        rec = records[key]
        out.append({"id": str(row["id"]), "sample_key": key, "status": rec["status"],
                    **{k: rec.get(k) for k in FLAG_KEYS}, "analysis": rec.get("analysis") or "",
                    "reason": rec.get("reason") or "", "attempts": int(rec.get("attempts") or 0)})
    table = pd.DataFrame(out)
    for k in FLAG_KEYS:
        table[k] = table[k].astype("Int8")
    return table
