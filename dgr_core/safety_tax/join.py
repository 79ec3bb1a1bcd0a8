"""The safety-tax join: finished train runs, their evaluations, like for like, and the shift of their data.

    data = collect(ws, backend="hf", reference="demo-self-generated")    # SafetyTaxData (dgr_core.safety_tax.records)
    evals = all_evaluations(ws)                  # model ref -> benchmark -> every BenchResult, oldest first

Everything is read from files the jobs wrote, each run's result.json through its typed Result
(`RunInfo.result_as(TrainResult)` / `result_as(EvalResult)`, dgr_core.jobs.results); a finished run whose result
does not parse is listed in `SafetyTaxData.skipped` with the reason (ResultError names the field), never fatal and
never silently dropped. How `collect` joins:
- every finished `train` run is one record: its base model (`TrainResult.base_model`), its training data (dataset,
  sample ids, N, seed = `TrainResult.train.seed`) and whether that data is refined (the dataset's
  `DatasetInfo.parent` is set or its origin starts with "refine:"; the *source* dataset is then the parent, so
  refined and vanilla runs line up);
- the trained model's metrics come from the `evaluate` runs whose `EvalResult.model.ref` is "run:<train run id>",
  the base model's from those whose model ref equals the base model's ref;
- like for like: per benchmark ONE evaluation setting is used, identified by its eval signature (benchmark, item
  set, decoding, judge, budget, seeds and prompt: `dgr_core.evaluate.signature`; a result written before
  signatures existed gets a "legacy" one that never equals a current one). It is the `settings` given, or the
  signature that covers the most training runs (then the most models, the most items, the newest). Per
  (model, benchmark) the latest finished run *with that signature* wins; an evaluation with other settings is left
  out, and `SafetyTaxData.excluded` says which and why (e.g. "items: 10 vs 100; decoding: greedy vs reasoning"),
  so a 10-item greedy evaluation never sits beside a 100-item sampled one. `SafetyTaxData.settings` names the
  signature used per benchmark; every cell carries its n;
- the shift of each run's training data comes from the score cache (dgr_core.safety_tax.shift); a run without
  one is listed in `SafetyTaxData.unscored` and still appears in the tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from dgr_core.config import Config
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.jobs.manager import RunInfo, list_runs
from dgr_core.jobs.results import EvalResult, ResultError, TrainResult
from dgr_core.models.loading import RUN_PREFIX
from dgr_core.safety_tax.records import BenchResult, Metrics, RunRecord, SafetyTaxData
from dgr_core.safety_tax.shift import ScoreReader, add_shift
from dgr_core.workspace import Workspace

R = TypeVar("R", bound=Config)
REFINED_ORIGIN = "refine:"
Skipped = list[tuple[str, str]]  # (run id, why)
AllEvaluations = dict[str, dict[str, list[BenchResult]]]  # model ref -> benchmark -> every result, oldest first


# ---------------------------------------------------------------------------------------------------------------
# Reading run folders
# ---------------------------------------------------------------------------------------------------------------


def _done(ws: Workspace, kind: str, expect: type[R], skipped: Skipped | None = None) -> list[tuple[RunInfo, R]]:
    """Finished runs of a kind with their typed result, oldest first (so later ones overwrite earlier ones).
    A result.json that does not parse (hand-edited, half-copied, from a newer version) is skipped, never fails
    the page: its run and the ResultError's message go to `skipped`."""
    runs = [r for r in list_runs(ws, kind) if r.state == "done"]
    runs.sort(key=lambda r: (str(r.spec.get("created_at", "")), r.id))
    out = []
    for run in runs:
        try:
            result = run.result_as(expect)
        except ResultError as exc:
            if skipped is not None:
                skipped.append((run.id, str(exc)))
            continue
        if result is not None:
            out.append((run, result))
    return out


def _bench_results(run: RunInfo, result: EvalResult) -> Metrics:
    from dgr_core.evaluate.signature import signature_of

    out: Metrics = {}
    created_at = str(run.spec.get("created_at", ""))
    for bench, m in result.metrics.items():
        if m.value is None:
            continue  # a benchmark with nothing graded has no headline number
        out[bench] = BenchResult(float(m.value), m.kind, m.metric, run.id, m.ci, m.n, signature_of(result, bench),
                                 m.truncation_rate, m.mean_reasoning_tokens, created_at, str(run.run_dir))
    return out


def all_evaluations(ws: Workspace, skipped: Skipped | None = None) -> AllEvaluations:
    """Every finished evaluation result per model ref and benchmark, oldest first (nothing chosen yet); evaluate
    runs whose result.json cannot be read are appended to `skipped` as (run id, why)."""
    out: AllEvaluations = {}
    for run, result in _done(ws, "evaluate", EvalResult, skipped):
        for bench, r in _bench_results(run, result).items():
            out.setdefault(result.model.ref, {}).setdefault(bench, []).append(r)
    return out


def choose_settings(evals: AllEvaluations, trained_refs: Sequence[str], base_refs: Sequence[str],
                    given: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """benchmark -> the signature to join on: `given[benchmark]` (a signature key) when it exists, else the one
    that covers the most training runs, then the most models, the most items, the newest."""
    candidates: dict[str, dict[str, dict[str, Any]]] = {}  # bench -> key -> stats
    for ref in dict.fromkeys([*trained_refs, *base_refs]):
        for bench, results in evals.get(ref, {}).items():
            for r in results:
                c = candidates.setdefault(bench, {}).setdefault(r.key, {"sig": r.signature, "trained": set(),
                                                                         "models": set(), "newest": ""})
                (c["trained"] if ref in trained_refs else c["models"]).add(ref)
                c["newest"] = max(c["newest"], r.created_at)
    chosen = {}
    for bench, by_key in candidates.items():
        if given and given.get(bench) in by_key:
            chosen[bench] = by_key[given[bench]]["sig"]
            continue
        best = max(by_key.values(), key=lambda c: (len(c["trained"]), len(c["trained"] | c["models"]),
                                                   int(c["sig"].get("n_items") or 0), c["newest"]))
        chosen[bench] = best["sig"]
    return chosen


def pick_metrics(evals: AllEvaluations, ref: str, settings: Mapping[str, dict[str, Any]],
                 excluded: list[dict[str, str]] | None = None) -> Metrics:
    """A model's metrics under the chosen settings (latest run per benchmark with the same signature); every
    evaluation of another setting that leaves a benchmark empty is appended to `excluded` with the reason."""
    from dgr_core.evaluate.signature import describe, differences

    out: Metrics = {}
    for bench, results in evals.get(ref, {}).items():
        sig = settings.get(bench)
        same = [r for r in results if sig is not None and r.key == sig.get("key")]
        if same:
            out[bench] = same[-1]
        elif excluded is not None and sig is not None:
            r = results[-1]
            why = "; ".join(differences(r.signature, sig))
            excluded.append({"model": ref, "benchmark": bench, "run": r.run_id,
                             "why": f"evaluated as {describe(r.signature)}, not as {describe(sig)} ({why})"})
    return out


def evaluations(ws: Workspace, settings: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Metrics]:
    """model ref -> benchmark -> metric: the latest finished run per (model, benchmark) among those with the
    benchmark's chosen signature (`settings`; default: `choose_settings` over every model)."""
    evals = all_evaluations(ws)
    settings = settings if settings is not None else choose_settings(evals, [], list(evals))
    return {ref: pick_metrics(evals, ref, settings) for ref in evals}


def _dataset_lineage(store: DatasetStore, name: str) -> tuple[bool, str, str | None, list[str]]:
    """(refined?, source dataset, current fingerprint, notes) of a training dataset."""
    if not store.exists(name):
        return False, name, None, [f"dataset {name!r} is no longer in the workspace: treated as original"]
    info = store.info(name)
    refined = bool(info.parent) or str(info.origin).startswith(REFINED_ORIGIN)
    return refined, (info.parent or name) if refined else name, info.fingerprint, []


def _fallback_rate(store: DatasetStore, dataset: str, ids: list[str] | None) -> float | None:
    """Share of the training samples whose refinement fell back to the original (None if not recorded)."""
    try:
        df = store.load(dataset)
    except (DGRError, OSError, ValueError):
        return None
    if "fell_back" not in df:
        return None
    if ids is not None:
        df = df[df["id"].astype(str).isin(set(ids))]
    return float(df["fell_back"].fillna(False).astype(bool).mean()) if len(df) else None


def _record(run: RunInfo, result: TrainResult, store: DatasetStore) -> RunRecord:
    """One training run from its typed result (its metrics and shift are filled in by `collect`)."""
    dataset, recorded = result.dataset, result.dataset_fingerprint
    refined, source, current, notes = _dataset_lineage(store, dataset)
    if current and recorded and current != recorded:
        notes.append(f"dataset {dataset!r} changed since training (fingerprint {recorded} → {current})")
    sample_ids = list(result.sample_ids)
    return RunRecord(
        run_id=run.id, name=str(run.spec.get("name", "")), created_at=str(run.spec.get("created_at", "")),
        base_model=result.base_model.ref, dataset=dataset, source_dataset=source, refined=refined,
        n_samples=result.n_samples or len(sample_ids), seed=result.seed, method=result.method,
        sample_ids=sample_ids, base_spec=result.base_model.to_dict(), dataset_fingerprint=recorded,
        current_fingerprint=current, notes=notes,
        fallback_rate=_fallback_rate(store, dataset, sample_ids) if refined and current else None)


def _benchmark_order(metrics: Sequence[Metrics]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for m in metrics:
        for bench, r in m.items():
            kinds.setdefault(bench, r.kind)
    order = {"harmful": 0, "benign": 1, "reasoning": 2}
    return dict(sorted(kinds.items(), key=lambda kv: (order.get(kv[1], 3), kv[0])))


def collect(ws: Workspace, *, backend: str = "hf", reference: str | Mapping[str, str] | None = None,
            settings: Mapping[str, str] | None = None) -> SafetyTaxData:
    """Join finished train runs with their evaluations and the shift of their training data.

    `backend` names the score cache to read (scores of different backends are never mixed); `reference` is a
    dataset (or base model ref -> dataset) whose mean NLL under the base model is subtracted for the ΔNLL stats;
    `settings` maps a benchmark to the eval signature key to join on (default: see the module docstring).
    """
    skipped: Skipped = []
    records = _records(ws, skipped)
    chosen, excluded = _join_like_for_like(all_evaluations(ws, skipped), records, settings)
    refs = _reference_map(reference, records)
    unscored: list[tuple[str, str]] = []
    reader = ScoreReader(ws, backend)
    for rec in records:
        why = add_shift(reader, rec, refs.get(rec.base_model))
        if why:
            unscored.append((rec.run_id, why))
    base_metrics = {r.base_model: r.base for r in records}
    benches = _benchmark_order([r.trained for r in records] + list(base_metrics.values()))
    return SafetyTaxData(records, base_metrics, benches, unscored, refs, backend, skipped, chosen, excluded)


def _records(ws: Workspace, skipped: Skipped) -> list[RunRecord]:
    """One record per finished train run with a readable result; the others go to `skipped` with the reason."""
    store, records = DatasetStore(ws), []
    for run, result in _done(ws, "train", TrainResult, skipped):
        try:
            records.append(_record(run, result, store))
        except (DGRError, OSError, ValueError) as exc:  # its dataset's files in the store are unreadable
            skipped.append((run.id, f"training dataset {result.dataset!r} cannot be read: {exc}"))
    return records


def _join_like_for_like(evals: AllEvaluations, records: list[RunRecord], settings: Mapping[str, str] | None
                        ) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Fill each record's trained and base metrics under one signature per benchmark; (chosen, excluded)."""
    trained_refs = [f"{RUN_PREFIX}{r.run_id}" for r in records]
    base_refs = list(dict.fromkeys(r.base_model for r in records))
    chosen = choose_settings(evals, trained_refs, base_refs, settings)
    excluded: list[dict[str, str]] = []
    bases = {ref: pick_metrics(evals, ref, chosen, excluded) for ref in base_refs}
    for rec in records:
        rec.trained = pick_metrics(evals, f"{RUN_PREFIX}{rec.run_id}", chosen, excluded)
        rec.base = dict(bases.get(rec.base_model, {}))
    return chosen, excluded


def _reference_map(reference: str | Mapping[str, str] | None, records: list[RunRecord]) -> dict[str, str]:
    if not reference:
        return {}
    if isinstance(reference, str):
        return {r.base_model: reference for r in records}
    return {str(k): str(v) for k, v in reference.items() if v}
