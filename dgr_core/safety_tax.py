"""The safety-tax view: does the distribution shift of the SFT data explain the reasoning a model loses?

Everything here is read from files the jobs wrote: no model weights are loaded and no score is computed (finding
the exact score-cache entry of an `hf` model reads its tokenizer and hashes its weight files, memoized).

    data = collect(ws, backend="hf", reference="demo-self-generated")
    frame = scatter_frame(data, "nll_total", "reasoning_drop_avg")    # one row per training run
    fit = fit_line(frame["x"], frame["y"])                             # slope, Pearson / Spearman + bootstrap CIs
    table = results_table(data)                                        # base / SFT / SFT on refined data
    curve = budget_curve(data)                                         # N samples vs refusal and accuracy

How the join works (`collect`):
- every finished `train` run is one record: its base model (result `base_model`), its training data (dataset,
  sample ids, N, seed) and whether that data is refined (the dataset's `DatasetInfo.parent` is set or its origin
  starts with "refine:"; the *source* dataset is then the parent, so refined and vanilla runs line up);
- the trained model's metrics come from the `evaluate` runs whose config `model.ref` is "run:<train run id>", the
  base model's from those whose `model.ref` equals the base model's ref;
- like for like: per benchmark ONE evaluation setting is used, identified by its eval signature (benchmark, item
  set, decoding, judge, budget, seeds and prompt: `dgr_core.evaluate.signature`). It is the `settings` given, or
  the signature that covers the most training runs (then the most models, the most items, the newest). Per
  (model, benchmark) the latest finished run *with that signature* wins; an evaluation with other settings is left
  out, and `SafetyTaxData.excluded` says which and why (e.g. "items: 10 vs 100; decoding: greedy vs reasoning"),
  so a 10-item greedy evaluation never sits beside a 100-item sampled one. `SafetyTaxData.settings` names the
  signature used per benchmark; every cell carries its n, and `results_cells` prints value, interval and n;
- the shift of a run's training data is read from the score cache of its dataset *under the base model* (the model
  being fine-tuned is the one whose distribution matters): the mean per-token NLL of the training samples, by
  segment, and, when a reference dataset is chosen (e.g. the model's self-generated answers, scored under the
  same model), the ΔNLL = mean NLL(training samples) − mean NLL(reference). A run whose samples are not all in the
  cache is listed in `SafetyTaxData.unscored` ("not scored yet"); it still appears in the tables.

Units: metrics are stored as fractions (as `evaluate` writes them); `scatter_frame`, `results_table` and
`budget_curve` give them in percent (accuracy drops in percentage points), the way papers report them.
NLL is in nats per token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.jobs.manager import RunInfo, list_runs
from dgr_core.models.loading import RUN_PREFIX, ModelSpec
from dgr_core.workspace import Workspace, read_json

SEGMENTS = ("total", "reasoning", "answer")
SHIFT_STATS: dict[str, str] = {
    **{f"nll_{s}": f"mean NLL ({s})" for s in SEGMENTS},
    **{f"delta_nll_{s}": f"ΔNLL vs reference ({s})" for s in SEGMENTS},
}
SHIFT_HELP = ("Mean per-token NLL (nats) of the run's training samples under its base model: higher = further "
              "from the model's own distribution. ΔNLL subtracts the mean NLL of the reference dataset (e.g. "
              "the model's self-generated answers) under the same model: 0 = as likely as the model's own text.")
REFINED_ORIGIN = "refine:"
MIN_FIT_POINTS = 3


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchResult:
    """One benchmark's headline metric for one model, from one evaluate run."""

    value: float  # fraction in [0, 1]
    kind: str  # "reasoning" | "harmful" | "benign"
    metric: str  # "accuracy" | "refusal_rate" | "over_refusal_rate"
    run_id: str  # the evaluate run it came from
    ci: tuple[float, float] | None = None
    n: int = 0
    signature: dict[str, Any] = field(default_factory=dict)  # see dgr_core.evaluate.signature
    truncation_rate: float | None = None
    mean_reasoning_tokens: float | None = None
    created_at: str = ""
    run_dir: str = ""  # where its outputs.jsonl is (pooled intervals over seeds read it)

    @property
    def key(self) -> str:
        return str(self.signature.get("key", ""))


Metrics = dict[str, BenchResult]


@dataclass
class RunRecord:
    """One finished training run joined with its evaluations and the shift of its training data."""

    run_id: str
    name: str
    created_at: str
    base_model: str  # ModelSpec.ref of the base model
    dataset: str  # what it was trained on
    source_dataset: str  # the original dataset (the parent when `dataset` is refined)
    refined: bool
    n_samples: int
    seed: int | None
    method: str
    sample_ids: list[str] | None
    base_spec: dict[str, Any] = field(default_factory=dict)  # the base ModelSpec as the train run recorded it
    dataset_fingerprint: str = ""  # recorded by the train run
    current_fingerprint: str | None = None  # of the dataset in the store now (None: deleted)
    trained: Metrics = field(default_factory=dict)
    base: Metrics = field(default_factory=dict)
    shift: dict[str, float] = field(default_factory=dict)  # SHIFT_STATS key -> value
    shift_store: str = ""  # the score-cache op key the shift was read from
    notes: list[str] = field(default_factory=list)
    fallback_rate: float | None = None  # refined runs: share of its training samples whose rewrite fell back

    @property
    def variant(self) -> str:
        return "refined" if self.refined else "original"


@dataclass
class SafetyTaxData:
    """What `collect` found: one record per finished training run, plus what is missing."""

    records: list[RunRecord]
    base_metrics: dict[str, Metrics]  # base model ref -> its metrics
    benchmarks: dict[str, str]  # benchmark -> kind, in a stable order (harmful, benign, reasoning)
    unscored: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    reference: dict[str, str] = field(default_factory=dict)  # base model ref -> reference dataset
    backend: str = "hf"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, why) train runs that could not be read
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> the eval signature joined
    excluded: list[dict[str, str]] = field(default_factory=list)  # evaluations left out: model, benchmark, run, why

    @property
    def empty(self) -> bool:
        return not self.records

    def shift_choices(self) -> list[str]:
        """SHIFT_STATS keys that at least one run has a value for (NLL ones first)."""
        have = {k for r in self.records for k, v in r.shift.items() if not math.isnan(v)}
        return [k for k in SHIFT_STATS if k in have]

    def reasoning_benchmarks(self) -> list[str]:
        return [b for b, k in self.benchmarks.items() if k == "reasoning"]

    def run_notes(self) -> list[tuple[str, str]]:
        """(run id, note) caveats found while joining, e.g. a dataset changed or deleted since training."""
        return [(r.run_id, note) for r in self.records for note in r.notes]

    def y_choices(self) -> list[str]:
        """Y metric keys available: average and per-benchmark accuracy, and their drop against the base model."""
        benches = self.reasoning_benchmarks()
        if not benches:
            return []
        out = ["reasoning_avg", "reasoning_drop_avg"]
        for b in benches:
            out += [f"reasoning:{b}", f"reasoning_drop:{b}"]
        return out

    def excluded_message(self) -> str:
        """One line per evaluation left out of the like-for-like join (empty when none was)."""
        return "\n".join(f"- `{e['run']}` ({e['model']}, {e['benchmark']}): {e['why']}" for e in self.excluded)

    def unscored_message(self) -> str:
        if not self.unscored:
            return ""
        lines = [f"`{run}`: {why}" for run, why in self.unscored]
        return "Not scored yet (no shift value): " + "; ".join(lines)


def y_label(key: str) -> str:
    """Axis label of a y metric key (see `SafetyTaxData.y_choices`)."""
    if key == "reasoning_avg":
        return "reasoning accuracy, average (%)"
    if key == "reasoning_drop_avg":
        return "reasoning accuracy drop vs base, average (points)"
    kind, _, bench = key.partition(":")
    if kind == "reasoning":
        return f"{bench} accuracy (%)"
    if kind == "reasoning_drop":
        return f"{bench} accuracy drop vs base (points)"
    raise DGRError(f"Unknown y metric {key!r}.")


def shift_label(key: str) -> str:
    if key not in SHIFT_STATS:
        raise DGRError(f"Unknown shift statistic {key!r}; choose one of {', '.join(SHIFT_STATS)}.")
    return f"{SHIFT_STATS[key]} (nats/token)"


# ---------------------------------------------------------------------------------------------------------------
# Reading run folders
# ---------------------------------------------------------------------------------------------------------------


def _done(ws: Workspace, kind: str) -> list[RunInfo]:
    """Finished runs of a kind with a readable result, oldest first (so later ones overwrite earlier ones)."""
    runs = [r for r in list_runs(ws, kind) if r.state == "done"]
    runs.sort(key=lambda r: (str(r.spec.get("created_at", "")), r.id))
    return [r for r in runs if _result(r) is not None]


def _result(run: RunInfo) -> dict[str, Any] | None:
    try:
        result = run.result()
    except ValueError:  # a result.json being written by hand or half-copied: skip, never fail the page
        return None
    return result if isinstance(result, dict) else None


def _model_ref(run: RunInfo) -> str:
    model = run.spec.get("config", {}).get("model") or (_result(run) or {}).get("model") or {}
    return str(model.get("ref", "")) if isinstance(model, dict) else str(model)


def _bench_results(run: RunInfo) -> Metrics:
    from dgr_core.evaluate.signature import signature_of

    result = _result(run) or {}
    out: Metrics = {}
    for bench, m in (result.get("metrics") or {}).items():
        if not isinstance(m, dict) or m.get("value") is None:
            continue  # a benchmark with nothing graded has no headline number
        ci = m.get("ci")
        out[str(bench)] = BenchResult(
            float(m["value"]), str(m.get("kind", "")), str(m.get("metric", "")), run.id,
            tuple(ci) if isinstance(ci, list | tuple) and len(ci) == 2 else None, int(m.get("n") or 0),
            signature_of(result, str(bench)), _float_or_none(m.get("truncation_rate")),
            _float_or_none(m.get("mean_reasoning_tokens")), str(run.spec.get("created_at", "")), str(run.run_dir))
    return out


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


AllEvaluations = dict[str, dict[str, list[BenchResult]]]  # model ref -> benchmark -> every result, oldest first


def all_evaluations(ws: Workspace) -> AllEvaluations:
    """Every finished evaluation result per model ref and benchmark, oldest first (nothing chosen yet)."""
    out: AllEvaluations = {}
    for run in _done(ws, "evaluate"):
        for bench, r in _bench_results(run).items():
            out.setdefault(_model_ref(run), {}).setdefault(bench, []).append(r)
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


def _seed(result: dict[str, Any], config: dict[str, Any]) -> int | None:
    for source in (result.get("train"), config.get("train"), result.get("subset"), config.get("subset")):
        if isinstance(source, dict) and source.get("seed") is not None:
            return int(source["seed"])
    return None


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


def _record(run: RunInfo, store: DatasetStore, evals: dict[str, Metrics]) -> RunRecord:
    result, config = _result(run) or {}, run.spec.get("config", {})
    base = ModelSpec.from_dict(result.get("base_model") or config.get("model") or {})
    dataset = str(result.get("dataset") or config.get("dataset") or "")
    refined, source, current, notes = _dataset_lineage(store, dataset)
    recorded = str(result.get("dataset_fingerprint") or "")
    if current and recorded and current != recorded:
        notes.append(f"dataset {dataset!r} changed since training (fingerprint {recorded} → {current})")
    ids = result.get("sample_ids")
    sample_ids = [str(i) for i in ids] if ids is not None else None
    return RunRecord(
        run_id=run.id, name=str(run.spec.get("name", "")), created_at=str(run.spec.get("created_at", "")),
        base_model=base.ref, dataset=dataset, source_dataset=source, refined=refined,
        n_samples=int(result.get("n_samples") or len(ids or [])), seed=_seed(result, config),
        method=str(result.get("method", "")), sample_ids=sample_ids,
        base_spec=base.to_dict(), dataset_fingerprint=recorded, current_fingerprint=current,
        trained=dict(evals.get(f"{RUN_PREFIX}{run.id}", {})), base=dict(evals.get(base.ref, {})), notes=notes,
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
    store, evals = DatasetStore(ws), all_evaluations(ws)
    records, skipped = [], []
    for run in _done(ws, "train"):
        try:
            records.append(_record(run, store, {}))
        except (DGRError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited or foreign result.json
            skipped.append((run.id, f"unreadable train result: {exc}"))
    chosen, excluded = _join_like_for_like(evals, records, settings)
    refs = _reference_map(reference, records)
    unscored: list[tuple[str, str]] = []
    reader = ScoreReader(ws, backend)
    for rec in records:
        why = _add_shift(reader, rec, refs.get(rec.base_model))
        if why:
            unscored.append((rec.run_id, why))
    base_metrics = {r.base_model: r.base for r in records}
    benches = _benchmark_order([r.trained for r in records] + list(base_metrics.values()))
    return SafetyTaxData(records, base_metrics, benches, unscored, refs, backend, skipped, chosen, excluded)


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


# ---------------------------------------------------------------------------------------------------------------
# Shift of the training data (from the score cache, never computed here)
# ---------------------------------------------------------------------------------------------------------------


def _add_shift(reader: ScoreReader, rec: RunRecord, reference: str | None) -> str:
    """Fill `rec.shift`; returns why it could not (empty string when it could)."""
    base = ModelSpec.from_dict(rec.base_spec) if rec.base_spec else ModelSpec(rec.base_model)
    table, op, why = reader.scores(rec.dataset, rec.sample_ids, base)
    if table is None:
        return why
    rec.shift_store = op
    means = {s: _nanmean(table[f"nll_{s}"]) for s in SEGMENTS}
    rec.shift.update({f"nll_{s}": v for s, v in means.items()})
    if not reference:
        return ""
    ref_table, _, ref_why = reader.scores(reference, None, base)
    if ref_table is None:
        return f"reference {ref_why}"
    rec.shift.update({f"delta_nll_{s}": means[s] - _nanmean(ref_table[f"nll_{s}"]) for s in SEGMENTS})
    return ""


def _nanmean(values: pd.Series) -> float:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


Found = tuple[pd.DataFrame, str] | None  # (per-sample score table with an id column, op key)


class ScoreReader:
    """Per-sample scores of datasets under a model, read from the score cache (never computed).

    First the exact cache entry for the default ScoreConfig (`dgr_core.shift.analysis.load_scores`, which derives
    the model's cache identity from its tokenizer and weight files); if that module is missing or the entry is
    incomplete, any score store of the same model ref and backend that holds every needed sample (`_scan`).
    Datasets, lookups and store indexes are memoized per reader: many runs share a dataset and a base model."""

    def __init__(self, ws: Workspace, backend: str):
        self.ws, self.backend, self.store = ws, backend, DatasetStore(ws)
        self._frames: dict[str, pd.DataFrame] = {}
        self._exact_memo: dict[tuple[str, ModelSpec], Found] = {}
        self._stores: dict[str, Any] = {}

    def scores(self, dataset: str, sample_ids: list[str] | None,
               base: ModelSpec) -> tuple[pd.DataFrame | None, str, str]:
        """(scores of the rows `sample_ids` (None = all) of `dataset` under `base`, op key, why missing)."""
        if not self.store.exists(dataset):
            return None, "", f"dataset {dataset!r} is not in the workspace"
        if dataset not in self._frames:
            self._frames[dataset] = self.store.load(dataset)
        df = self._frames[dataset]
        if sample_ids is not None:
            df = df[df["id"].astype(str).isin(set(sample_ids))]
        if df.empty:
            return None, "", f"none of the training samples are in dataset {dataset!r}"
        found = self._exact(dataset, base)
        if found is not None:
            table = found[0][found[0]["id"].astype(str).isin(set(df["id"].astype(str)))]
            found = (table.reset_index(drop=True), found[1]) if len(table) == len(df) else None
        found = found or self._scan(df, base)
        if found is None:
            return None, "", (f"{dataset!r} is not scored under {base.ref!r} (backend {self.backend}): score it "
                              "on the Shift page")
        return found[0], found[1], ""

    def _exact(self, dataset: str, base: ModelSpec) -> Found:
        key = (dataset, base)
        if key not in self._exact_memo:  # failures are memoized too: a missing model is slow to find missing
            self._exact_memo[key] = self._load_exact(dataset, base)
        return self._exact_memo[key]

    def _load_exact(self, dataset: str, base: ModelSpec) -> Found:
        try:
            from dgr_core.scoring.api import ScoreConfig
            from dgr_core.shift.analysis import load_scores

            result = load_scores(self.ws, dataset, ScoreConfig(model=base, backend=self.backend))
        except (ImportError, DGRError, OSError, ValueError):  # module not there yet, or model files unreadable
            return None
        return None if result is None else (result.table, result.store.key)

    def _scan(self, df: pd.DataFrame, base: ModelSpec) -> Found:
        """Scores from any store of this model ref and backend that covers every row (chat mode first, then
        newest). Matching on the ref, not the weights hash, is what makes this work without the model, at the
        price that a model replaced under the same path would match its old scores: the op key is recorded."""
        from dgr_core.scoring.api import text_hash
        from dgr_core.scoring.cache import sample_key

        rows = df.to_dict("records")
        for cache in self._candidates(base.ref):
            keys = [sample_key(cache.key, text_hash(r)) for r in rows]
            if cache.missing(keys):
                continue
            table = cache.table(keys)
            table.insert(0, "id", [str(r["id"]) for r in rows])
            return table, cache.key
        return None

    def _candidates(self, ref: str) -> list[Any]:
        found = []
        for meta_path in self.ws.scores.glob("*/meta.json"):
            try:
                meta = read_json(meta_path)
            except ValueError:
                continue
            model = meta.get("model") if isinstance(meta, dict) else None
            if meta.get("operation") != "score" or not isinstance(model, dict):
                continue
            if model.get("ref") == ref and model.get("backend") == self.backend:
                chat = (meta.get("settings") or {}).get("mode") == "chat"
                found.append((not chat, -meta_path.stat().st_mtime, str(meta_path)))
        stores = (self._open(path) for *_, path in sorted(found))
        return [s for s in stores if s is not None]

    def _open(self, meta_path: str) -> Any:
        from dgr_core.scoring.cache import ScoreStore, op_key

        if meta_path not in self._stores:
            meta = {k: v for k, v in read_json(Path(meta_path)).items() if k != "op_key"}
            # A meta.json that does not hash to its folder is not a store this code wrote: opening it would
            # create a new folder instead.
            ok = op_key(meta) == Path(meta_path).parent.name
            self._stores[meta_path] = ScoreStore(self.ws.scores, meta) if ok else None
        return self._stores[meta_path]


# ---------------------------------------------------------------------------------------------------------------
# Per-run values
# ---------------------------------------------------------------------------------------------------------------


def _mean_of(metrics: Metrics, benches: Sequence[str]) -> float:
    values = [metrics[b].value for b in benches if b in metrics]
    return float(np.mean(values)) if values else float("nan")


def _kind_mean(metrics: Metrics, kind: str) -> float:
    return _mean_of(metrics, [b for b, r in metrics.items() if r.kind == kind])


def y_value(rec: RunRecord, key: str, reasoning: Sequence[str]) -> float:
    """A run's y metric in percent (points for drops); NaN when a needed evaluation is missing.

    A drop averages only the benchmarks both the trained and the base model were evaluated on, so a missing
    base evaluation never turns into a fake drop."""
    if key == "reasoning_avg":
        return 100 * _mean_of(rec.trained, reasoning)
    if key == "reasoning_drop_avg":
        both = [b for b in reasoning if b in rec.trained and b in rec.base]
        return 100 * (_mean_of(rec.base, both) - _mean_of(rec.trained, both))
    kind, _, bench = key.partition(":")
    if kind == "reasoning":
        return 100 * _mean_of(rec.trained, [bench])
    if kind == "reasoning_drop":
        return 100 * (_mean_of(rec.base, [bench]) - _mean_of(rec.trained, [bench]))
    raise DGRError(f"Unknown y metric {key!r}.")


def scatter_frame(data: SafetyTaxData, x_stat: str, y_metric: str) -> pd.DataFrame:
    """One row per training run with both an x (shift) and a y value; hover columns included."""
    shift_label(x_stat)  # validates the key
    reasoning = data.reasoning_benchmarks()
    rows = []
    for rec in data.records:
        rows.append({
            "run_id": rec.run_id, "name": rec.name, "base_model": rec.base_model, "dataset": rec.dataset,
            "source_dataset": rec.source_dataset, "variant": rec.variant, "n_samples": rec.n_samples,
            "seed": rec.seed, "x": rec.shift.get(x_stat, float("nan")), "y": y_value(rec, y_metric, reasoning),
            "refusal": 100 * _kind_mean(rec.trained, "harmful"),
            "over_refusal": 100 * _kind_mean(rec.trained, "benign"),
            "reasoning_avg": 100 * _mean_of(rec.trained, reasoning),
            "base_reasoning_avg": 100 * _mean_of(rec.base, reasoning),
            "truncation_rate": 100 * _attr_mean([rec.trained], reasoning, "truncation_rate"),
            "reasoning_tokens": _attr_mean([rec.trained], reasoning, "mean_reasoning_tokens"),
            "fallback_rate": 100 * rec.fallback_rate if rec.fallback_rate is not None else float("nan"),
        })
    frame = pd.DataFrame(rows, columns=SCATTER_COLUMNS)
    return frame[np.isfinite(frame["x"].astype(float)) & np.isfinite(frame["y"].astype(float))].reset_index(drop=True)


SCATTER_COLUMNS = ["run_id", "name", "base_model", "dataset", "source_dataset", "variant", "n_samples", "seed", "x",
                   "y", "refusal", "over_refusal", "reasoning_avg", "base_reasoning_avg", "truncation_rate",
                   "reasoning_tokens", "fallback_rate"]


# ---------------------------------------------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """A least-squares line y = slope·x + intercept with Pearson and Spearman correlations.

    Intervals are bootstrap 95% percentile intervals over runs (pairs resampled with replacement, seeded);
    resamples where x or y is constant have no correlation and are left out. NaN everywhere when n < 3."""

    n: int
    slope: float = float("nan")
    intercept: float = float("nan")
    pearson: float = float("nan")
    pearson_ci: tuple[float, float] = (float("nan"), float("nan"))
    pearson_p: float = float("nan")
    spearman: float = float("nan")
    spearman_ci: tuple[float, float] = (float("nan"), float("nan"))
    spearman_p: float = float("nan")
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.n >= MIN_FIT_POINTS and math.isfinite(self.slope)

    def summary(self) -> str:
        """One line for a caption or a figure annotation."""
        if not self.ok:
            return self.note
        return (f"n = {self.n} · Pearson r = {self.pearson:.2f} [{_fmt(self.pearson_ci[0])}, "
                f"{_fmt(self.pearson_ci[1])}] · Spearman ρ = {self.spearman:.2f} [{_fmt(self.spearman_ci[0])}, "
                f"{_fmt(self.spearman_ci[1])}] · slope {self.slope:.3g}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.2f}"


def fit_line(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_boot: int = 2000) -> Fit:
    """Fit a line and correlate (see `Fit`)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)
    if n < MIN_FIT_POINTS:
        return Fit(n, note=f"{n} run(s) with both values: a fit needs at least {MIN_FIT_POINTS}.")
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return Fit(n, note="x or y is the same for every run: no line or correlation can be fitted.")
    slope, intercept = np.polyfit(xa, ya, 1)
    pr, pp = sps.pearsonr(xa, ya)
    sr, sp = sps.spearmanr(xa, ya)
    p_ci, s_ci = _boot_corr(xa, ya, np.random.default_rng(seed), n_boot)
    note = "few runs: the intervals are wide and rough" if n < 8 else ""
    return Fit(n, float(slope), float(intercept), float(pr), p_ci, float(pp), float(sr), s_ci, float(sp), note)


def _boot_corr(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
               n_boot: int) -> tuple[tuple[float, float], tuple[float, float]]:
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    pear = _rowwise_corr(x[idx], y[idx])
    # Spearman = Pearson on ranks (ties averaged), computed per resample.
    rx = sps.rankdata(x[idx], axis=1)
    ry = sps.rankdata(y[idx], axis=1)
    spear = _rowwise_corr(rx, ry)
    return _ci(pear), _ci(spear)


def _rowwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denom
    return np.clip(r[np.isfinite(r)], -1.0, 1.0)


def _ci(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------


def _bench_columns(data: SafetyTaxData) -> list[tuple[str, str]]:
    """(column name, benchmark) in the literature's order: refusal, over-refusal, reasoning."""
    prefix = {"harmful": "refusal: ", "benign": "over-refusal: ", "reasoning": ""}
    return [(f"{prefix.get(kind, '')}{b}", b) for b, kind in data.benchmarks.items()]


def _metric_row(data: SafetyTaxData, metrics_list: list[Metrics]) -> dict[str, float]:
    """Benchmark columns (percent, mean over the runs that have them) + the reasoning average."""
    row: dict[str, float] = {}
    for col, bench in _bench_columns(data):
        values = [m[bench].value for m in metrics_list if bench in m]
        row[col] = 100 * float(np.mean(values)) if values else float("nan")
    reasoning = data.reasoning_benchmarks()
    avgs = [_mean_of(m, reasoning) for m in metrics_list]
    avgs = [a for a in avgs if math.isfinite(a)]
    row["reasoning avg"] = 100 * float(np.mean(avgs)) if avgs else float("nan")
    row[TRUNCATION_COLUMN] = 100 * _attr_mean(metrics_list, reasoning, "truncation_rate")
    row[TOKENS_COLUMN] = _attr_mean(metrics_list, reasoning, "mean_reasoning_tokens")
    return row


def _attr_mean(metrics_list: list[Metrics], benches: Sequence[str], attr: str) -> float:
    """Mean of a per-benchmark statistic (truncation rate, reasoning tokens) over benchmarks and runs."""
    values = [getattr(m[b], attr) for m in metrics_list for b in benches if b in m]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


TABLE_LEAD = ["base model", "method", "dataset", "N", "runs"]
DELTA_COLUMN = "Δ reasoning avg vs SFT"
TRUNCATION_COLUMN = "truncated % (reasoning)"  # cut at the token budget (counted wrong in the accuracy)
TOKENS_COLUMN = "reasoning tokens"  # mean thinking tokens per reasoning answer (overthinking is part of the tax)
FALLBACK_COLUMN = "refine fallback %"  # refined rows: share of training samples whose rewrite fell back
# The columns after the benchmark ones, in order. Per-sample pattern rates (issue #16) belong after these.
TAIL_COLUMNS = ["reasoning avg", DELTA_COLUMN, TRUNCATION_COLUMN, TOKENS_COLUMN, FALLBACK_COLUMN]


def results_table(data: SafetyTaxData, n_samples: int | None = None) -> pd.DataFrame:
    """The paper-style table: per base model, a "base model" row, then per source dataset "SFT" (original data)
    and "SFT on refined" rows, with metrics in percent, averaged over seeds (`format_table` makes it printable;
    `results_cells` prints each cell with its interval and n).

    `n_samples` picks the training size; None takes, per (base model, source dataset), the largest N that has runs
    (the variants are compared at the same N when both have it). After the benchmark columns come the reasoning
    average, its difference to the vanilla SFT row (refined rows; points), the truncation rate and mean reasoning
    tokens of the reasoning benchmarks, and a refined row's refinement fallback rate (`TAIL_COLUMNS`)."""
    rows = []
    for lead, metrics_list, recs in _row_groups(data, n_samples):
        fallback = [r.fallback_rate for r in recs if r.fallback_rate is not None]
        rows.append({**lead, **_metric_row(data, metrics_list),
                     FALLBACK_COLUMN: 100 * float(np.mean(fallback)) if fallback else float("nan")})
    _add_deltas(rows)
    columns = TABLE_LEAD + [c for c, _ in _bench_columns(data)] + TAIL_COLUMNS
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"N": "Int64", "runs": "Int64"})  # the base-model row has neither: <NA>, not 0


def _add_deltas(rows: list[dict[str, Any]]) -> None:
    """The refined row's reasoning average minus the SFT row's of the same base model and source dataset."""
    vanilla = {(r["base model"], r["_source"]): r["reasoning avg"] for r in rows if r["method"] == "SFT"}
    for r in rows:
        if r["method"] == "SFT on refined":
            r[DELTA_COLUMN] = r["reasoning avg"] - vanilla.get((r["base model"], r["_source"]), float("nan"))


RowGroup = tuple[dict[str, Any], list[Metrics], list[RunRecord]]


def _row_groups(data: SafetyTaxData, n_samples: int | None) -> list[RowGroup]:
    """(lead columns, the metrics averaged in the row, its training runs) per table row."""
    groups: list[RowGroup] = []
    for base in dict.fromkeys(r.base_model for r in data.records):
        lead = {"base model": base, "method": "base model", "dataset": "–", "N": None, "runs": None, "_source": ""}
        groups.append((lead, [data.base_metrics.get(base, {})], []))
        mine = [r for r in data.records if r.base_model == base]
        for source in dict.fromkeys(r.source_dataset for r in mine):
            groups += _source_groups([r for r in mine if r.source_dataset == source], n_samples)
    return groups


def _pick_n(runs: list[RunRecord], n_samples: int | None) -> int | None:
    sizes = {r.n_samples for r in runs}
    if n_samples is not None:
        return n_samples if n_samples in sizes else None
    return max(sizes) if sizes else None


def _source_groups(runs: list[RunRecord], n_samples: int | None) -> list[RowGroup]:
    target = _pick_n(runs, n_samples)
    out = []
    for variant, method in (("original", "SFT"), ("refined", "SFT on refined")):
        mine = [r for r in runs if r.variant == variant]
        n = target if any(r.n_samples == target for r in mine) else (None if n_samples else _pick_n(mine, None))
        chosen = [r for r in mine if r.n_samples == n]
        if chosen:
            lead = {"base model": chosen[0].base_model, "method": method, "N": n, "runs": len(chosen),
                    "dataset": ", ".join(dict.fromkeys(r.dataset for r in chosen)),
                    "_source": chosen[0].source_dataset}
            out.append((lead, [r.trained for r in chosen], chosen))
    return out


def results_cells(data: SafetyTaxData, n_samples: int | None = None, digits: int = 1) -> pd.DataFrame:
    """`results_table` for reading: each benchmark cell is "value [low, high] n=…" (percent; the interval is the
    run's own for one run, a cluster bootstrap over items pooling the runs' outputs for several seeds; n counts
    every graded response), the other columns as `format_table` prints them."""
    table = format_table(results_table(data, n_samples), digits)
    for i, (_, metrics_list, _) in enumerate(_row_groups(data, n_samples)):
        for col, bench in _bench_columns(data):
            table.loc[i, col] = _cell([m[bench] for m in metrics_list if bench in m], digits)
    return table


def _cell(results: list[BenchResult], digits: int) -> str:
    if not results:
        return "–"
    value, ci, n = pooled_rate(results)
    interval = f" [{100 * ci[0]:.{digits}f}, {100 * ci[1]:.{digits}f}]" if ci else ""
    return f"{100 * value:.{digits}f}{interval} n={n}"


def pooled_rate(results: list[BenchResult]) -> tuple[float, tuple[float, float] | None, int]:
    """(mean value, interval, n) of one benchmark over one or several evaluation runs (e.g. training seeds).
    Several runs: the per-item outcomes of all their outputs.jsonl are pooled and items resampled (cluster
    bootstrap), so the interval accounts for the runs without treating their items as independent."""
    value = float(np.mean([r.value for r in results]))
    n = sum(r.n for r in results)
    if len(results) == 1:
        return value, results[0].ci, n
    from dgr_core.evaluate.runner import OUTPUTS_FILE, rate_with_ci, read_outputs

    bench = next(iter(r.signature.get("benchmark") for r in results), None)
    records = [rec for r in results if r.run_dir
               for rec in read_outputs(Path(r.run_dir) / OUTPUTS_FILE) if rec.get("benchmark") == bench]
    if len(records) < n or not records:  # outputs missing or cut: no pooled interval rather than a wrong one
        return value, None, n
    _, ci = rate_with_ci(results[0].kind, records)
    return value, ((float(ci[0]), float(ci[1])) if ci else None), n


BUDGET_MEASURES = {"refusal": "refusal rate (%)", "reasoning_avg": "reasoning accuracy, average (%)"}


def budget_curve(data: SafetyTaxData) -> pd.DataFrame:
    """N training samples against refusal rate and average reasoning accuracy, original vs refined.

    One row per (base model, source dataset, variant, N, measure): mean over the runs (seeds), the sample standard
    deviation (0 for a single run) as the error bar, and the number of runs."""
    reasoning = data.reasoning_benchmarks()
    long = []
    for rec in data.records:
        values = {"refusal": 100 * _kind_mean(rec.trained, "harmful"),
                  "reasoning_avg": 100 * _mean_of(rec.trained, reasoning)}
        for measure, value in values.items():
            if math.isfinite(value):
                long.append({"base_model": rec.base_model, "source_dataset": rec.source_dataset,
                             "variant": rec.variant, "n_samples": rec.n_samples, "measure": measure,
                             "value": value, "seed": rec.seed})
    keys = ["base_model", "source_dataset", "variant", "n_samples", "measure"]
    columns = keys + ["mean", "std", "n_runs", "seeds"]
    if not long:
        return pd.DataFrame(columns=columns)
    grouped = pd.DataFrame(long).groupby(keys, sort=True)
    out = grouped["value"].agg(mean="mean", std=lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                               n_runs="count").reset_index()
    out["seeds"] = grouped["seed"].agg(lambda s: sorted({int(v) for v in s if v is not None and v == v})).to_numpy()
    return out[columns]


def format_table(df: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A printable copy: floats to `digits` decimals, missing values as "–" (for the page and the report)."""
    out = df.copy().astype(object)
    for col in df.columns:
        is_float = pd.api.types.is_float_dtype(df[col])
        out[col] = [("–" if _missing(v) else f"{v:.{digits}f}" if is_float else str(v)) for v in df[col]]
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like cells (e.g. seeds) are never "missing"
        return False


def pattern_rates(ws: Workspace, data: SafetyTaxData) -> pd.DataFrame:
    """Risky-pattern rates (Wilson 95% intervals) of each run's training rows, from its dataset's audit
    (`dgr_core.audit.training`: a judge model's tags where they exist, else the heuristic's; NaN when unaudited)."""
    from dgr_core.audit.training import RunRows, run_pattern_rates

    return run_pattern_rates(ws, [RunRows(r.run_id, r.dataset, r.variant, r.sample_ids) for r in data.records])
