"""The records of the safety-tax view: what `collect` (dgr_core.safety_tax.join) builds and every table reads.

    rec = data.records[0]                       # RunRecord: one finished training run, joined
    rec.trained["math500"].value                # BenchResult of the trained model (a fraction), rec.base the base's
    rec.shift["nll_total"]                      # mean NLL of its training samples under the base model (nats)
    data.y_choices(), data.shift_choices()      # the axis keys a page can offer; y_label / shift_label name them

Metrics are stored as fractions, as `evaluate` writes them; the tables turn them into percent. The helpers at the
end average a benchmark set of one model (`mean_of`, `kind_mean`) or a per-benchmark statistic over runs
(`attr_mean`), NaN when nothing is there, so a missing evaluation never becomes a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dgr_core.errors import DGRError

SEGMENTS = ("total", "reasoning", "answer")
SHIFT_STATS: dict[str, str] = {
    **{f"nll_{s}": f"mean NLL ({s})" for s in SEGMENTS},
    **{f"delta_nll_{s}": f"ΔNLL vs reference ({s})" for s in SEGMENTS},
}
SHIFT_HELP = ("Mean per-token NLL (nats) of the run's training samples under its base model: higher = further "
              "from the model's own distribution. ΔNLL subtracts the mean NLL of the reference dataset (e.g. "
              "the model's self-generated answers) under the same model: 0 = as likely as the model's own text.")


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
    seed: int  # TrainConfig.seed of the run (`TrainResult.seed`): data order, LoRA init, dropout
    method: str
    sample_ids: list[str] | None  # the rows trained on (None: every row of `dataset`)
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
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, why): unreadable results
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

    def skipped_message(self) -> str:
        """One line per finished train or evaluate run left out because its result could not be read."""
        return "\n".join(f"- `{run}`: {why}" for run, why in self.skipped)

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


def mean_of(metrics: Metrics, benches: Sequence[str]) -> float:
    values = [metrics[b].value for b in benches if b in metrics]
    return float(np.mean(values)) if values else float("nan")


def kind_mean(metrics: Metrics, kind: str) -> float:
    return mean_of(metrics, [b for b, r in metrics.items() if r.kind == kind])


def attr_mean(metrics_list: list[Metrics], benches: Sequence[str], attr: str) -> float:
    """Mean of a per-benchmark statistic (truncation rate, reasoning tokens) over benchmarks and runs."""
    values = [getattr(m[b], attr) for m in metrics_list for b in benches if b in m]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")
