"""Runs: list every run with a one-line summary, read what a run wrote, and compare two runs.

    from dgr_core import runs
    runs.run_table(ws, kind="evaluate")                  # one row per run: id, kind, state, model, headline
    runs.config_diff(info_a.spec["config"], info_b.spec["config"])   # the settings that differ
    runs.metric_deltas(info_a.result_as(EvalResult), info_b.result_as(EvalResult))  # evaluate runs, side by side
    table, test = runs.paired_outcomes(info_a, info_b, "arithmetic") # per-item outcomes + McNemar / bootstrap
    runs.loss_curves({"vanilla": info_a, "dgr": info_b})             # train runs: loss.jsonl, long format

Only files written by the jobs are read (job.json, status.json, result.json, outputs.jsonl, loss.jsonl); nothing
here loads a model. Run b is compared against run a (the baseline): every delta is b - a. result.json is read
back through the kind's Result type (`dgr_core.jobs.results`): these functions take `EvalResult` / any Result,
never a dict; a run whose result.json does not parse shows its `ResultError` in `run_table`'s error column.

Paired outcomes: the two evaluate runs are joined on the item id of one benchmark. An item scores 1 when it is
correct (reasoning) or refused (harmful and benign sets), else 0; with k samples per item, its score is the mean
over its samples. Every item counts: a truncated or malformed answer scores 0, never leaves the comparison. The
p-value is the exact McNemar test (one sample per item) or the paired bootstrap's (k samples); the confidence
interval of the difference is a paired bootstrap over items.

Like for like: `metric_deltas` puts two results side by side per benchmark with `comparable` (their eval
signatures, `dgr_core.evaluate.signature`, are equal) and `why_not` (what differs: items, decoding, budget,
judge, seeds, prompt), so a difference between different settings is never read as an effect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.config import Config
from dgr_core.errors import DGRError
from dgr_core.evaluate.paired import PairedResult, mcnemar, paired_bootstrap
from dgr_core.evaluate.runner import OUTPUTS_FILE, read_outputs
from dgr_core.jobs.manager import RunInfo, list_runs
from dgr_core.jobs.results import BenchmarkMetrics, EvalResult, ResultError
from dgr_core.workspace import Workspace, read_jsonl

LOSS_FILE = "loss.jsonl"
ABSENT = "(absent)"  # shown in a config diff for a key one run does not have
# Whether a bigger value of a metric is better: refusing harmful prompts is good, refusing benign ones is not.
HIGHER_IS_BETTER = {"accuracy": True, "refusal_rate": True, "over_refusal_rate": False}
OUTPUT_COLUMNS = ["benchmark", "id", "sample", "kind", "category", "verdict", "prompt", "response", "reference",
                  "extracted", "finish_reason", "n_tokens", "reasoning_tokens", "outcome", "refused", "judge",
                  "matched"]

RunRef = RunInfo | Path | str


def _dir(run: RunRef) -> Path:
    return run.run_dir if isinstance(run, RunInfo) else Path(run)


def _name(run: RunRef) -> str:
    return _dir(run).name


# ---------------------------------------------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------------------------------------------


def _model_of(config: dict[str, Any]) -> str:
    """The model a run used: the first `...model.ref` (or a plain `model` string) in its config."""
    for key, value in flatten(config).items():
        if key == "model" or key.endswith("model.ref"):
            return str(value)
    return ""


def headline(kind: str, result: Config | None) -> str:
    """One line of a run's result: metrics of an evaluate run, else its first few numeric fields."""
    if result is None:
        return ""
    if isinstance(result, EvalResult):
        return "; ".join(f"{b} {m.metric} {m.value:.2f}{_counts(m)}" for b, m in result.metrics.items()
                         if m.value is not None)
    scalars = [(f.name, getattr(result, f.name)) for f in dataclasses.fields(result)  # type: ignore[arg-type]
               if f.name != "seconds"]
    numbers = [(k, v) for k, v in scalars if isinstance(v, int | float) and not isinstance(v, bool)]
    return "; ".join(f"{k} {v:.4g}" for k, v in numbers[:4])


def _counts(metric: BenchmarkMetrics) -> str:
    """" (n=20, 15% cut)": the n and truncation rate of a metric, where the result recorded them."""
    rate = metric.truncation_rate
    return "" if rate is None else f" (n={metric.n}, {rate:.0%} cut)"


def _row_result(info: RunInfo) -> tuple[str, str]:
    """(headline, error) of one run for the table: a result.json that does not parse shows its error."""
    error = str(info.status.get("error") or "")
    if info.state != "done":
        return "", error
    try:
        return headline(info.kind, info.result()), error
    except ResultError as exc:
        return "", "; ".join(e for e in (error, str(exc)) if e)


def run_table(ws: Workspace, kind: str | None = None) -> pd.DataFrame:
    """Every run (newest first) with its kind, state, name, what it does (from its typed config: `RunInfo.what`),
    model, creation time, headline result and error (the job's, or why its result.json cannot be read: the table
    never fails on one bad run folder)."""
    rows = []
    for info in list_runs(ws, kind):
        config = info.spec.get("config") or {}
        line, error = _row_result(info)
        rows.append({"run": info.id, "kind": info.kind, "state": info.state, "name": info.spec.get("name", ""),
                     "what": info.what, "model": _model_of(config), "created": info.spec.get("created_at", ""),
                     "headline": line, "error": error})
    columns = ["run", "kind", "state", "name", "what", "model", "created", "headline", "error"]
    return pd.DataFrame(rows, columns=columns)


def result_fields(result: Config) -> dict[str, Any]:
    """A typed result's fields as JSON values, for a settings table: all but an evaluate run's metrics (they have
    their own table) and long lists of records (in the JSON as stored)."""
    data = result.to_dict()
    return {k: v for k, v in data.items()
            if k != "metrics" and not (isinstance(v, list) and v and isinstance(v[0], dict))}


# ---------------------------------------------------------------------------------------------------------------
# Config diff
# ---------------------------------------------------------------------------------------------------------------


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys. Lists of dicts are flattened by index ("benchmarks.0.name"); other lists stay
    whole values, so [1, 2] vs [1] is one differing key, not two."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                out.update(flatten(v, f"{path}.{i}."))
        else:
            out[path] = value
    return out


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> pd.DataFrame:
    """The keys whose values differ between two configs (columns key, a, b), keys in first-seen order; a key
    only one config has shows ABSENT on the other side."""
    fa, fb = flatten(a or {}), flatten(b or {})
    keys = list(dict.fromkeys([*fa, *fb]))
    rows = [{"key": k, "a": fa.get(k, ABSENT), "b": fb.get(k, ABSENT)}
            for k in keys if k not in fa or k not in fb or fa[k] != fb[k]]
    return pd.DataFrame(rows, columns=["key", "a", "b"])


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def metrics_table(result: EvalResult | None) -> pd.DataFrame:
    """An evaluate result's metrics as a table: benchmark, kind, metric, value, ci_low, ci_high and the counts."""
    rows = []
    for name, m in _metrics(result).items():
        ci_low, ci_high = m.ci if m.ci is not None else (None, None)
        rows.append({"benchmark": name, "kind": m.kind, "metric": m.metric, "value": m.value,
                     "ci_low": ci_low, "ci_high": ci_high, "n": m.n, "n_items": m.items, "samples": m.samples,
                     "pass_at_k": m.pass_at_k, "truncation_rate": m.truncation_rate, "n_truncated": m.n_truncated,
                     "n_malformed": m.n_malformed, "n_no_answer": m.n_no_answer,
                     "mean_reasoning_tokens": m.mean_reasoning_tokens, "setting": _setting(result, name)})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


METRIC_COLUMNS = ["benchmark", "kind", "metric", "value", "ci_low", "ci_high", "n", "n_items", "samples", "pass_at_k",
                  "truncation_rate", "n_truncated", "n_malformed", "n_no_answer", "mean_reasoning_tokens", "setting"]


def _setting(result: EvalResult | None, benchmark: str) -> str:
    from dgr_core.evaluate.signature import describe, signature_of

    return describe(signature_of(result, benchmark))


def _better(metric: str | None, delta: float | None) -> str:
    if delta is None or metric not in HIGHER_IS_BETTER:
        return ""
    if abs(delta) < 1e-12:
        return "="
    return "b" if (delta > 0) == HIGHER_IS_BETTER[metric] else "a"


def _metrics(result: EvalResult | None) -> dict[str, BenchmarkMetrics]:
    return result.metrics if result is not None else {}


def metric_deltas(res_a: EvalResult | None, res_b: EvalResult | None) -> pd.DataFrame:
    """Two evaluate results side by side per benchmark: value_a, value_b, delta = b - a, which run is better
    ("a", "b", "=", or "" when a side is missing), both intervals and both n. Benchmarks of either run appear."""
    ma, mb = _metrics(res_a), _metrics(res_b)
    rows = []
    for name in dict.fromkeys([*ma, *mb]):
        a, b = ma.get(name), mb.get(name)
        va, vb = a.value if a else None, b.value if b else None
        delta = vb - va if va is not None and vb is not None else None
        metric = (a.metric if a else "") or (b.metric if b else "")
        why = _why_not(res_a, res_b, name) if a and b else ["only one run has this benchmark"]
        rows.append({"benchmark": name, "kind": (a.kind if a else "") or (b.kind if b else ""), "metric": metric,
                     "value_a": va, "value_b": vb, "delta": delta, "better": _better(metric, delta),
                     "ci_a": _ci(a), "ci_b": _ci(b), "n_a": a.n if a else None, "n_b": b.n if b else None,
                     "truncation_a": a.truncation_rate if a else None,
                     "truncation_b": b.truncation_rate if b else None,
                     "comparable": not why, "why_not": "; ".join(why)})
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


def _ci(metric: BenchmarkMetrics | None) -> list[float] | None:
    """A metric's 95% interval as [low, high] (as stored), None when absent."""
    return list(metric.ci) if metric is not None and metric.ci is not None else None


DELTA_COLUMNS = ["benchmark", "kind", "metric", "value_a", "value_b", "delta", "better", "ci_a", "ci_b", "n_a", "n_b",
                 "truncation_a", "truncation_b", "comparable", "why_not"]


def _why_not(res_a: EvalResult | None, res_b: EvalResult | None, benchmark: str) -> list[str]:
    """What makes two results of one benchmark not like for like (empty when their signatures are equal)."""
    from dgr_core.evaluate.signature import differences, signature_of

    sa, sb = signature_of(res_a, benchmark), signature_of(res_b, benchmark)
    return [] if sa.get("key") == sb.get("key") else differences(sa, sb) or ["settings differ"]


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


def verdict_of(record: dict[str, Any]) -> str:
    """One word per sample: the reasoning outcome, or "refused" / "complied" for safety prompts."""
    if record.get("kind") == "reasoning":
        return str(record.get("outcome") or "")
    return "refused" if record.get("refused") else "complied"


def load_outputs(run: RunRef) -> pd.DataFrame:
    """A run's outputs.jsonl as a table (OUTPUT_COLUMNS, plus any extra fields), with a `verdict` column."""
    records = read_outputs(_dir(run) / OUTPUTS_FILE)
    df = pd.DataFrame(records)
    for col in OUTPUT_COLUMNS:
        if col not in df:
            df[col] = None
    df["verdict"] = [verdict_of(r) for r in records]
    return df[OUTPUT_COLUMNS + [c for c in df.columns if c not in OUTPUT_COLUMNS]]


def filter_outputs(df: pd.DataFrame, *, benchmark: str | None = None, verdict: str | None = None,
                   text: str | None = None) -> pd.DataFrame:
    """Rows of one benchmark and / or verdict, and / or whose prompt or response contains `text` (any case)."""
    keep = pd.Series(True, index=df.index)
    if benchmark:
        keep &= df["benchmark"] == benchmark
    if verdict:
        keep &= df["verdict"] == verdict
    if text:
        needle = text.lower()
        keep &= (df["prompt"].fillna("").str.lower().str.contains(needle, regex=False)
                 | df["response"].fillna("").str.lower().str.contains(needle, regex=False))
    return df[keep]


def _item_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One row per item: id, score (1 = correct / refused; the mean over its samples when there are k), samples,
    truncated (samples cut at the token limit), verdict (of the first sample), category, prompt, response."""
    kind = df["kind"].iloc[0]
    if kind == "reasoning":
        hit = (df["outcome"] == "correct").astype(float)
    else:
        hit = df["refused"].fillna(False).astype(bool).astype(float)
    cut = (df["finish_reason"] == "length").astype(int)
    df = df.assign(_hit=hit, _cut=cut)
    first = df.drop_duplicates("id", keep="first").set_index("id")
    grouped = df.groupby("id", sort=False)
    out = pd.DataFrame({"score": grouped["_hit"].mean(), "samples": grouped.size(), "truncated": grouped["_cut"].sum()})
    out = out.join(first[["category", "verdict", "prompt", "response"]]).reset_index()
    out["kind"] = kind
    return out


def _benchmark_rows(run: RunRef, benchmark: str) -> pd.DataFrame:
    df = load_outputs(run)
    df = df[df["benchmark"] == benchmark] if len(df) else df
    if df.empty:
        raise DGRError(f"run {_name(run)} has no outputs for benchmark {benchmark!r}")
    if "sample" not in df:
        df = df.assign(sample=0)
    df = df.assign(sample=df["sample"].fillna(0).astype(int))
    return _item_scores(df.drop_duplicates(["id", "sample"], keep="last"))


def paired_outcomes(run_a: RunRef, run_b: RunRef, benchmark: str, *, n_boot: int = 2000,
                    seed: int = 0) -> tuple[pd.DataFrame, PairedResult]:
    """Per-item outcomes of two evaluate runs on one benchmark, and the paired test of b against a.

    The table has one row per common item: id, category, verdict_a, verdict_b, score_a, score_b, change
    (score_b - score_a), prompt, response_a, response_b. Every common item is kept: truncated answers score 0.
    `table.attrs` holds n_common, n_truncated_a / n_truncated_b (items with a sample cut at the token limit),
    n_only_a and n_only_b. With one sample per item the PairedResult is McNemar's (p-value, b01 / b10) with the
    paired-bootstrap interval; with k samples, the paired bootstrap of the per-item means."""
    a, b = _benchmark_rows(run_a, benchmark), _benchmark_rows(run_b, benchmark)
    if a["kind"].iloc[0] != b["kind"].iloc[0]:
        raise DGRError(f"benchmark {benchmark!r} is {a['kind'].iloc[0]} in run a but {b['kind'].iloc[0]} in run b")
    joined = a.merge(b, on="id", suffixes=("_a", "_b"))
    kept = joined
    if kept.empty:
        raise DGRError(f"runs {_name(run_a)} and {_name(run_b)} share no item of {benchmark!r}")
    table = pd.DataFrame({
        "id": kept["id"], "category": kept["category_a"], "verdict_a": kept["verdict_a"],
        "verdict_b": kept["verdict_b"], "score_a": kept["score_a"], "score_b": kept["score_b"],
        "change": kept["score_b"] - kept["score_a"], "prompt": kept["prompt_a"],
        "response_a": kept["response_a"], "response_b": kept["response_b"],
    }).reset_index(drop=True)
    table.attrs.update(n_common=len(joined), n_dropped=0, n_truncated_a=int((joined["truncated_a"] > 0).sum()),
                       n_truncated_b=int((joined["truncated_b"] > 0).sum()),
                       n_only_a=len(set(a["id"]) - set(b["id"])), n_only_b=len(set(b["id"]) - set(a["id"])))
    return table, paired_test(table["score_a"].to_numpy(), table["score_b"].to_numpy(), n_boot=n_boot, seed=seed)


def paired_test(score_a: Any, score_b: Any, *, n_boot: int = 2000, seed: int = 0) -> PairedResult:
    """McNemar's exact test with the paired-bootstrap CI of mean(b) - mean(a) attached (scores 0/1); for
    per-item means over k samples, the paired bootstrap alone."""
    boot = paired_bootstrap(score_a, score_b, n_boot=n_boot, seed=seed)
    binary = all(float(x) in (0.0, 1.0) for x in [*score_a, *score_b])
    if not binary:
        return boot
    exact = mcnemar(score_a, score_b)
    return replace(exact, method="mcnemar-exact p; paired-bootstrap CI", ci_low=boot.ci_low, ci_high=boot.ci_high,
                   confidence=boot.confidence)


def common_benchmarks(res_a: EvalResult | None, res_b: EvalResult | None) -> list[str]:
    """Benchmarks both evaluate results have, in run a's order (the ones a paired test can use)."""
    mb = _metrics(res_b)
    return [n for n in _metrics(res_a) if n in mb]


# ---------------------------------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------------------------------


def load_loss(run: RunRef) -> pd.DataFrame:
    """A train run's loss.jsonl (step, loss, epoch); empty when the run has none yet. Cut lines are skipped."""
    rows = [{"step": rec["step"], "loss": rec["loss"], "epoch": rec.get("epoch")}
            for rec in read_jsonl(_dir(run) / LOSS_FILE)
            if isinstance(rec, dict) and rec.get("step") is not None and rec.get("loss") is not None]
    return pd.DataFrame(rows, columns=["step", "loss", "epoch"])


def loss_curves(runs: dict[str, RunRef]) -> pd.DataFrame:
    """Loss curves of several runs in long format (run, step, loss, epoch), for one overlaid chart."""
    frames = [load_loss(r).assign(run=label) for label, r in runs.items()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["run", "step", "loss", "epoch"])
    return pd.concat(frames, ignore_index=True)[["run", "step", "loss", "epoch"]]
