"""The `audit` job kind: tag every sample of a dataset with the five risky patterns, save the dataset's tag table,
and summarise it in result.json.

    from dgr_core.jobs import manager
    run = manager.submit(ws, "audit", AuditConfig(dataset="STAR-1").to_dict())                       # heuristic
    run = manager.submit(ws, "audit", AuditConfig(dataset="STAR-1", judge="Qwen/Qwen3-8B").to_dict())  # a model

Resume: verdicts are cached per chunk (`dgr_core.audit.store`), so running the same run folder again (`dgr jobs
resume RUN`) judges only the samples not in the cache.
result.json: dataset, judge, op_key, n, computed, cache_hits, n_unparsable, unparsable_reasons, rates (per
pattern: k, n, rate, Wilson 95% interval), agreement (per pattern agreement and Cohen's kappa with the other
judge's audit of this dataset, heuristic vs model, when one exists), seconds, samples_per_s.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from dgr_core.audit import stats
from dgr_core.audit.config import AuditConfig
from dgr_core.audit.engine import AuditResult, audit_frame
from dgr_core.audit.store import list_audits, save_tags
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import AuditJobResult

KIND = "audit"


def run(cfg: AuditConfig, ctx) -> dict[str, Any]:
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ctx.ws)
    info = store.info(cfg.dataset)  # fails fast, naming the dataset, before a model loads
    df = store.load(cfg.dataset)
    df = df.head(cfg.limit) if cfg.limit else df
    ctx.progress({"done": 0, "total": len(df), "unit": "samples",
                  "message": "auditing" if cfg.is_heuristic else f"loading judge {cfg.judge}"})
    result = audit_frame(ctx.ws, df, cfg, progress=ctx.progress, should_stop=ctx.should_stop)
    meta = {"op_key": result.op_key, "fingerprint": info.fingerprint, "n": len(df), "limit": cfg.limit,
            "config": cfg.to_dict(), "run": ctx.run_dir.name, "heuristic": cfg.is_heuristic}
    save_tags(ctx.ws, cfg.dataset, result.judge, result.table, meta)
    ctx.progress({"done": len(df), "total": len(df), "unit": "samples", "message": "done"})
    return summary(ctx.ws, cfg, result)


def summary(ws, cfg: AuditConfig, result: AuditResult) -> dict[str, Any]:
    t = result.table
    rates = stats.pattern_rates(t)
    return {"dataset": cfg.dataset, "judge": result.judge, "op_key": result.op_key, "n": len(t),
            "computed": result.computed, "cache_hits": len(t) - result.computed,
            "n_unparsable": result.n_unparsable,
            "unparsable_reasons": dict(Counter(t.loc[t["status"] != "ok", "reason"]).most_common(10)),
            "rates": _records(rates), "agreement": _agreement(ws, cfg, result),
            "seconds": result.seconds,
            "samples_per_s": round(result.computed / result.seconds, 3) if result.seconds else None}


def _agreement(ws, cfg: AuditConfig, result: AuditResult) -> dict[str, Any] | None:
    """Agreement with the other side (heuristic vs a judge model) on this dataset, if it was audited."""
    others = [a for a in list_audits(ws, cfg.dataset) if a.is_heuristic != cfg.is_heuristic]
    if not others:
        return None
    other = others[0]
    table = stats.agreement(result.table, other.tags())
    return {"with": other.judge, "per_pattern": _records(table)}


def _records(df) -> list[dict[str, Any]]:
    # result.json is strict JSON: NaN becomes null.
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def describe(cfg: AuditConfig) -> str:
    return f"audit {cfg.dataset} with {cfg.judge}"


# uses_model: a kind declares it once; the heuristic run also takes the device lock (it is over in seconds).
_KIND = register_kind(JobKind(KIND, AuditConfig, AuditJobResult, run, uses_model=True, describe=describe))
validate = _KIND.validate
