"""The shape of every job kind's `result.json`, as typed `Config` dataclasses (dgr_core.config), and its schema.

The worker writes `result.json` from the kind's Result type (a key the type does not declare fails the job, so a
result can never drift from its reader), and readers get it back through the same type:

    res = read_result(run_dir)                    # e.g. TrainResult(method="lora", …); None if unfinished
    res = read_result(run_dir, TrainResult)       # the same, typed for the checker; ResultError if another kind
    res.train.seed, res.base_model.ref            # nested configs come back as their own types
    info.result_as(EvalResult).metrics["math500"].value    # through manager.RunInfo

Readers never index a result dict: `RunInfo.result()` / `read_result` are the only way in, and `stored_result()`
gives the JSON as stored only for display ("result.json as stored"). A file that does not parse (hand-edited,
half-copied, from a newer version) raises `ResultError` naming the run folder and the field.

`result.json` carries `result_schema` (RESULT_SCHEMA). Folders written before it existed (schema 0) hold a subset
of today's keys (real ones, written by the first version, are in tests/data/schema0), so `upgrade_result` only
strips the envelope; a later change of shape adds its step there, with a test. Every field has a default so that
a result from an older version that lacked a field still reads.
Nested parts are typed where readers use them: the base model (`ModelSpec`), the training settings
(`TrainConfig`, `SubsetConfig`), the decoding (`GenerationConfig`, `Decoding`), each benchmark's metrics
(`BenchmarkMetrics`) and the demo's table rows and steps. Free-form parts stay `dict[str, Any]`: model identities
(`dgr_core.models.loading.cache_identity`), eval signatures (`dgr_core.evaluate.signature`) and judge descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from dgr_core.backends.base import GenerationConfig
from dgr_core.config import Config, ConfigError
from dgr_core.errors import DGRError
from dgr_core.models.loading import ModelSpec
from dgr_core.train.config import SubsetConfig, TrainConfig
from dgr_core.workspace import read_json

R = TypeVar("R", bound=Config)

RESULT_SCHEMA = 1
ENVELOPE = ("finished_at", "result_schema")  # written by the worker around every result


@dataclass
class ScoreResult(Config):
    section: ClassVar[str] = "score result"

    dataset: str = ""
    op_key: str = ""  # the score store's key
    n: int = 0
    computed: int = 0  # samples computed by this run (the rest came from the cache)
    cache_hits: int = 0
    mean: dict[str, float | None] = field(default_factory=dict)  # nll_reasoning / nll_answer / nll_total
    tokens: int = 0


@dataclass
class RefineResult(Config):
    section: ClassVar[str] = "refine result"

    output_dataset: str = ""
    parent: str = ""
    mode: str = "joint"
    n: int = 0
    n_output: int = 0
    n_fell_back: int = 0
    fallback_rate: float = 0.0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    on_failure: str = "original"  # "original" (joint/separate) or "dropped" (self)
    score_op_key: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    n_generated: int = 0
    seconds: float = 0.0
    generation_seconds: float = 0.0
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    template_hash: str = ""
    model: str = ""


@dataclass
class TrainResult(Config):
    section: ClassVar[str] = "train result"

    base_model: ModelSpec = field(default_factory=ModelSpec)  # the model that was fine-tuned
    base_identity: dict[str, Any] | None = None
    model_ref: str = ""  # "run:<id>"
    output: str = ""
    method: str = "lora"
    dataset: str = ""
    dataset_fingerprint: str = ""
    subset: SubsetConfig = field(default_factory=SubsetConfig)  # which rows were drawn
    sample_ids: list[str] = field(default_factory=list)
    n_samples: int = 0
    n_truncated: int = 0
    steps: int = 0
    first_loss: float | None = None
    final_loss: float | None = None
    epoch_losses: list[float | None] = field(default_factory=list)
    learning_rate: float = 0.0
    seconds: float = 0.0
    train_seconds: float = 0.0
    resumed_from_epoch: int | None = None
    n_trainable: int = 0
    n_params: int = 0
    processes: int = 1
    precision: str = ""
    device: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)  # how it was trained

    @property
    def seed(self) -> int:
        """The run's seed: it seeds data order, LoRA init and dropout (`TrainConfig.seed`)."""
        return self.train.seed


@dataclass
class BenchmarkMetrics(Config):
    """One benchmark's metrics in an evaluate result (`dgr_core.evaluate.runner.benchmark_metric`)."""

    section: ClassVar[str] = "benchmark metrics"

    kind: str = ""  # "reasoning" | "harmful" | "benign"
    metric: str = ""  # "accuracy" | "refusal_rate" | "over_refusal_rate"
    value: float | None = None  # fraction in [0, 1]; None when nothing was graded
    ci: tuple[float, float] | None = None  # 95% interval (Wilson, or a cluster bootstrap over items with k samples)
    n: int = 0  # graded responses (items x samples; schema 0 left truncated reasoning answers out)
    n_total: int = 0
    n_items: int | None = None  # None in results written before it was recorded (see `items`)
    samples: int = 1  # k per item
    n_length: int = 0  # responses cut at max_new_tokens
    truncation_rate: float | None = None
    mean_reasoning_tokens: float | None = None
    n_truncated: int = 0
    n_malformed: int | None = None
    n_no_answer: int = 0
    pass_at_k: float | None = None
    k: int | None = None
    harmful_rate: float | None = None  # harmful sets: 1 - refusal rate
    signature: dict[str, Any] | None = None  # dgr_core.evaluate.signature; None in results written before it

    @property
    def items(self) -> int:
        """Items asked. A schema-0 result has no n_items and one sample per item: its n_total (its n left out
        the truncated reasoning answers), as its legacy eval signature counts them."""
        return self.n_items if self.n_items is not None else (self.n_total or self.n)


@dataclass
class Decoding(Config):
    """The decoding of an evaluate run in words and numbers (`dgr_core.evaluate.runner.decoding_record`)."""

    section: ClassVar[str] = "decoding"

    preset: str = "greedy"  # "greedy" | "reasoning" | "sampled"
    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1
    max_new_tokens: int = 0
    seed: int = 0


@dataclass
class EvalResult(Config):
    section: ClassVar[str] = "evaluate result"

    model: ModelSpec = field(default_factory=ModelSpec)
    model_label: str = ""
    model_identity: dict[str, Any] | None = None
    backend: str = "hf"
    metrics: dict[str, BenchmarkMetrics] = field(default_factory=dict)  # benchmark -> its metrics
    judge: str = ""
    judges: dict[str, str] = field(default_factory=dict)
    judge_semantics: Any = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    decoding: Decoding | None = None  # the decoding preset, k and budget; None in results written before it
    system_prompt: str | None = None
    reasoning_suffix: str = ""
    n_samples: int = 0  # generations: items x k
    n_items: int = 0
    n_generated: int = 0
    seconds: float = 0.0
    outputs: str = "outputs.jsonl"


@dataclass
class ProjectResult(Config):
    section: ClassVar[str] = "project result"

    datasets: list[str] = field(default_factory=list)
    n: int = 0
    method: str = ""
    requested: str = ""
    note: str = ""
    n_components: int = 2
    seed: int = 0


@dataclass
class EmbedResult(Config):
    section: ClassVar[str] = "embed_sentences result"

    datasets: list[str] = field(default_factory=list)
    column: str = "answer"
    n_texts: int = 0
    computed: int = 0


@dataclass
class AuditJobResult(Config):
    section: ClassVar[str] = "audit result"

    dataset: str = ""
    judge: str = "heuristic"
    op_key: str = ""
    n: int = 0
    computed: int = 0
    cache_hits: int = 0
    n_unparsable: int = 0
    unparsable_reasons: dict[str, int] = field(default_factory=dict)
    rates: list[dict[str, Any]] = field(default_factory=list)  # per pattern: k, n, rate, Wilson 95% interval
    agreement: dict[str, Any] | None = None  # with the other judge's audit of this dataset, when one exists
    seconds: float = 0.0
    samples_per_s: float | None = None


@dataclass
class DemoRefine(Config):
    """The demo's refine step in brief."""

    section: ClassVar[str] = "demo refine"

    output_dataset: str | None = None
    n: int | None = None
    n_fell_back: int | None = None
    fallback_rate: float | None = None
    fallback_reasons: dict[str, int] | None = None
    seconds: float | None = None


@dataclass
class DemoTrain(Config):
    """One training arm of the demo in brief (its full result is in its own run folder)."""

    section: ClassVar[str] = "demo train"

    run_id: str | None = None
    model_ref: str | None = None
    dataset: str | None = None
    n_samples: int | None = None
    sample_ids: list[str] | None = None
    steps: int | None = None
    first_loss: float | None = None
    final_loss: float | None = None
    seconds: float | None = None


@dataclass
class DemoEvaluation(Config):
    """One evaluated model of the demo: its evaluate run and metrics."""

    section: ClassVar[str] = "demo evaluation"

    run_id: str | None = None
    model: ModelSpec | None = None
    metrics: dict[str, BenchmarkMetrics] = field(default_factory=dict)


@dataclass
class DemoRow(Config):
    """One row of the demo's flat table: (model, N, seed, benchmark) and the headline metric."""

    section: ClassVar[str] = "demo row"

    model: str = ""  # "base", "sft-original" or "sft-refined"
    n_train: int | None = None
    seed: int | None = None
    benchmark: str = ""
    kind: str = ""
    metric: str = ""
    value: float | None = None
    ci_lo: float | None = None
    ci_hi: float | None = None
    n: int | None = None
    run_id: str | None = None


@dataclass
class DemoStep(Config):
    """One step of the demo as it ran: its child run and time (reused = finished by an earlier attempt)."""

    section: ClassVar[str] = "demo step"

    key: str = ""
    kind: str = ""
    run_id: str | None = None
    seconds: float | None = None
    reused: bool | None = None


@dataclass
class DemoResult(Config):
    section: ClassVar[str] = "demo result"

    config: dict[str, Any] = field(default_factory=dict)  # DemoConfig.to_dict() (dgr_core.pipeline)
    datasets: dict[str, str] = field(default_factory=dict)
    refine: DemoRefine = field(default_factory=DemoRefine)
    shift: dict[str, dict[str, float | None]] = field(default_factory=dict)  # original / refined -> mean NLLs
    train: dict[str, DemoTrain] = field(default_factory=dict)
    evaluations: dict[str, DemoEvaluation] = field(default_factory=dict)
    table: list[DemoRow] = field(default_factory=list)
    steps: list[DemoStep] = field(default_factory=list)
    seconds: float = 0.0


class ResultError(ConfigError):
    """A result.json that cannot be read back: unparsable, of an unknown shape, or of another kind than asked."""


def upgrade_result(raw: dict[str, Any]) -> dict[str, Any]:
    """A result.json of any known schema, as the current one (envelope removed). ConfigError if from the future."""
    version = raw.get("result_schema", 0)
    if not isinstance(version, int) or version > RESULT_SCHEMA:
        raise ConfigError(f"result.json has result_schema {version!r}, newer than this DGR Lens reads "
                          f"({RESULT_SCHEMA}): upgrade DGR Lens to open this run.")
    # 0 -> 1: the same keys; schema 1 only adds the version stamp. (Add later steps here, oldest first.)
    return {k: v for k, v in raw.items() if k not in ENVELOPE}


def parse_result(kind: str, raw: dict[str, Any]) -> Config:
    """The typed result of a job of `kind` from its result.json dict (upgraded first)."""
    from dgr_core.jobs.kinds import get_kind

    result_type = get_kind(kind).result
    return result_type.from_dict(upgrade_result(raw))


def read_result(run_dir: Path, expect: type[R] | None = None) -> Any:
    """The typed result of a finished run folder, or None if it has no result.json yet.

    With `expect` (a Result type) the run must be of that kind. ResultError, naming the folder, when the file or
    job.json does not parse or does not match the type (a hand-edited or half-copied result, another kind)."""
    run_dir = Path(run_dir)
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    try:
        kind = str(read_json(run_dir / "job.json")["kind"])
        typed = parse_result(kind, read_json(path))
    except (DGRError, ValueError, KeyError, TypeError, OSError) as exc:  # DGRError: ConfigError, unknown kind
        raise ResultError(f"run {run_dir.name}: result.json cannot be read: {exc}") from exc
    if expect is not None and not isinstance(typed, expect):
        wanted = (expect.section or expect.__name__).removesuffix(" result")
        raise ResultError(f"run {run_dir.name} is a {kind!r} run, not a {wanted!r} run.")
    return typed
