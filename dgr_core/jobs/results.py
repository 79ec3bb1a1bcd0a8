"""The shape of every job kind's `result.json`, as typed `Config` dataclasses (dgr_core.config), and its schema.

The worker writes `result.json` from the kind's Result type (a key the type does not declare fails the job, so a
result can never drift from its reader), and readers get it back through the same type:

    res = read_result(run_dir)            # e.g. TrainResult(method="lora", final_loss=0.8, …); None if unfinished
    res.final_loss

`result.json` carries `result_schema` (RESULT_SCHEMA). Folders written before it existed (schema 0) had the same
keys, so `upgrade_result` only stamps them; a later change of shape adds its step there, with a test. Every field
has a default so that a result from an older version that lacked a field still reads.
Nested free-form parts (metrics, identities, configs) stay `dict[str, Any]`: their own types live with their code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dgr_core.config import Config, ConfigError
from dgr_core.workspace import read_json

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

    base_model: dict[str, Any] = field(default_factory=dict)  # ModelSpec.to_dict() of the base
    base_identity: dict[str, Any] | None = None
    model_ref: str = ""  # "run:<id>"
    output: str = ""
    method: str = "lora"
    dataset: str = ""
    dataset_fingerprint: str = ""
    subset: dict[str, Any] = field(default_factory=dict)
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
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict()


@dataclass
class EvalResult(Config):
    section: ClassVar[str] = "evaluate result"

    model: dict[str, Any] = field(default_factory=dict)
    model_label: str = ""
    model_identity: dict[str, Any] | None = None
    backend: str = "hf"
    metrics: dict[str, Any] = field(default_factory=dict)  # benchmark -> its metrics
    judge: str = ""
    judges: dict[str, str] = field(default_factory=dict)
    judge_semantics: Any = None
    generation: dict[str, Any] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)  # the decoding preset, k and budget (signature.py)
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
class DemoResult(Config):
    section: ClassVar[str] = "demo result"

    config: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    refine: dict[str, Any] = field(default_factory=dict)
    shift: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


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


def read_result(run_dir: Path) -> Any:
    """The typed result of a finished run folder, or None if it has no result.json yet."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    return parse_result(read_json(Path(run_dir) / "job.json")["kind"], read_json(path))
