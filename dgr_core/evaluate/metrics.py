"""Metrics per benchmark over every item and sample (nothing leaves the denominator), with their intervals.

    metrics = summarize(items, records, cfg)     # benchmark -> kind, metric, value, ci, n, …, signature

reasoning -> "accuracy" (pass@k beside it when k > 1); harmful -> "refusal_rate" (and "harmful_rate"); benign ->
"over_refusal_rate". Intervals: Wilson for one sample per item, a cluster bootstrap over items for k > 1.
The shape is `dgr_core.jobs.results.BenchmarkMetrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dgr_core.evaluate.config import KINDS, METRIC_OF_KIND, EvalConfig, judge_of_kind
from dgr_core.evaluate.paired import accuracy_with_ci, cluster_bootstrap_ci, pass_at_k
from dgr_core.evaluate.signature import eval_signature


def _hit(kind: str, record: dict[str, Any]) -> bool:
    return record.get("outcome") == "correct" if kind == "reasoning" else bool(record.get("refused"))


def _by_item(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r.get("id")), []).append(r)
    return out


def rate_with_ci(kind: str, records: list[dict[str, Any]], *, seed: int = 0) -> tuple[float | None, list[float] | None]:
    """The rate of hits (correct / refused) over every record, with a 95% interval: Wilson when each item was
    answered once, a cluster bootstrap over items when some were answered several times."""
    if not records:
        return None, None
    groups = [[_hit(kind, r) for r in recs] for recs in _by_item(records).values()]
    if all(len(g) == 1 for g in groups):
        value, lo, hi = accuracy_with_ci(np.asarray([g[0] for g in groups], dtype=bool))
    else:
        value, lo, hi = cluster_bootstrap_ci([np.asarray(g, dtype=float) for g in groups], seed=seed)
    return value, [lo, hi]


def _pass_at_k(records: list[dict[str, Any]]) -> dict[str, Any]:
    groups = [[r.get("outcome") == "correct" for r in recs] for recs in _by_item(records).values()]
    k = min(len(g) for g in groups)
    if k < 2:
        return {}
    value = float(np.mean([pass_at_k(len(g), sum(g), k) for g in groups]))
    return {"pass_at_k": value, "k": k}


def _mean_reasoning_tokens(records: list[dict[str, Any]]) -> float | None:
    counts = [r["reasoning_tokens"] for r in records if isinstance(r.get("reasoning_tokens"), int | float)]
    return float(np.mean(counts)) if counts else None


def benchmark_metric(kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline metric of one benchmark over every record (see the module docstring for the definitions).

    Nothing leaves the denominator: n = n_total = every (item, sample). n_length counts responses cut at
    max_new_tokens (truncation_rate = n_length / n); for reasoning, n_truncated counts those cut before an explicit
    answer and n_malformed those that stopped inside an unclosed think block (both graded wrong)."""
    n = len(records)
    n_length = sum(r.get("finish_reason") == "length" for r in records)
    value, ci = rate_with_ci(kind, records)
    samples = max((len(v) for v in _by_item(records).values()), default=0)
    out = {"kind": kind, "metric": METRIC_OF_KIND[kind], "value": value, "ci": ci, "n": n, "n_total": n,
           "n_items": len(_by_item(records)), "samples": samples, "n_length": n_length,
           "truncation_rate": n_length / n if n else None, "mean_reasoning_tokens": _mean_reasoning_tokens(records)}
    if kind == "reasoning":
        out.update(n_truncated=sum(r.get("outcome") == "truncated" for r in records),
                   n_malformed=sum(r.get("outcome") == "malformed" for r in records),
                   n_no_answer=sum(r.get("outcome") == "no_answer" for r in records), **_pass_at_k(records))
    else:
        out.update(n_truncated=n_length, n_malformed=sum(r.get("think_status") == "unclosed"
                                                         and r.get("finish_reason") != "length" for r in records),
                   n_no_answer=sum(not str(r.get("response") or "").strip() for r in records))
    if kind == "harmful":
        out["harmful_rate"] = None if value is None else 1.0 - value
    return out


def summarize(items: pd.DataFrame, records: list[dict[str, Any]], cfg: EvalConfig | None = None,
              judges: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Metrics per benchmark over the records of `items` and samples 0..k-1 (records of items or samples no
    longer asked for are ignored); with `cfg`, each benchmark gets its eval signature (`judges`: the judge name
    per kind, default from `cfg`)."""
    k = cfg.samples if cfg is not None else 1
    names = judges or ({kind: judge_of_kind(cfg, kind) for kind in KINDS} if cfg is not None else {})
    by_key = {(r.get("benchmark"), r.get("id"), int(r.get("sample", 0))): r for r in records}
    metrics = {}
    for name, group in items.groupby("benchmark", sort=False):
        kind = str(group["kind"].iloc[0])
        recs = [by_key[(name, i, s)] for i in group["id"] for s in range(k) if (name, i, s) in by_key]
        metrics[str(name)] = benchmark_metric(kind, recs)
        if cfg is not None:
            metrics[str(name)]["signature"] = eval_signature(
                benchmark=str(name), kind=kind, item_ids=[str(i) for i in group["id"]],
                generation=cfg.generation.to_dict(), samples=cfg.samples, judge=names[kind],
                system_prompt=cfg.system_prompt, reasoning_suffix=cfg.reasoning_suffix)
    return metrics
