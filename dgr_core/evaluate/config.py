"""What an evaluation is: `EvalConfig` (model, benchmarks, decoding, judge, k samples), its checks, the decoding
presets and the judge names per kind.

    cfg = apply_preset(EvalConfig(limit=100), "reasoning", max_new_tokens=32768)    # T 0.6, top-p 0.95, k = 4
    check_config(cfg)                      # DGRError naming the first bad field (no model, no data loaded)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from dgr_core.backends.base import GenerationConfig
from dgr_core.config import Config, ConfigError
from dgr_core.errors import DGRError
from dgr_core.evaluate.arithmetic import LEVELS
from dgr_core.evaluate.benchmarks import BENCHMARKS
from dgr_core.evaluate.judge import KEYWORDS, judge_label
from dgr_core.evaluate.mathgrade import GRADER_NAME
from dgr_core.evaluate.refusal import KeywordJudge
from dgr_core.evaluate.signature import REASONING_PROTOCOL, decoding_label
from dgr_core.models.loading import DEMO_ALIASES, ModelSpec

KINDS = ("reasoning", "harmful", "benign")


METRIC_OF_KIND = {"reasoning": "accuracy", "harmful": "refusal_rate", "benign": "over_refusal_rate"}


REASONING_SUFFIX = "Put the final answer after 'The answer is'."


DEFAULT_BENCHMARKS = ("arithmetic", "gsm8k100", "strongreject", "benign_edgy")


ARITHMETIC_ALL = 100  # arithmetic items generated when limit is 0 ("all" of an endless set)


MAX_BUDGET = 32768  # new tokens: the long-reasoning budget of the papers (use it on a GPU)


MAX_SAMPLES = 64


# Decoding presets: greedy, and the reasoning-model protocol of the papers (several samples per problem).
DECODING_PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0, "top_p": 1.0, "samples": 1},
    "reasoning": {**REASONING_PROTOCOL, "samples": 4},
}


@dataclass(frozen=True)
class BenchmarkSource(Config):
    """One benchmark of a run: a registered name, or a JSONL file (then `path` and `prompt_field` are needed)."""

    name: str  # registry name, or the label of a file benchmark (its outputs are stored under it)
    path: str | None = None  # JSONL file of prompts; None = registered benchmark
    prompt_field: str = "prompt"  # file benchmarks: the field with the prompt
    reference_field: str | None = None  # file benchmarks: the field with the reference answer (reasoning)
    id_field: str | None = None  # file benchmarks: the field with a stable id (else "<name>-<row>")
    kind: str = "reasoning"  # file benchmarks: "reasoning" | "harmful" | "benign"
    limit: int | None = None  # overrides EvalConfig.limit for this benchmark (0 = all)

    @classmethod
    def _from_json(cls, value: Any, where: str) -> BenchmarkSource:
        """A name ("gsm8k100") or an object with the fields above (dgr_core.config's hook)."""
        return cls(value) if isinstance(value, str) else cls.from_dict(value, where)


def _default_sources() -> list[BenchmarkSource]:
    return [BenchmarkSource(n) for n in DEFAULT_BENCHMARKS]


@dataclass
class EvalConfig(Config):
    """What to evaluate and how. Saved in job.json; `to_dict` / `from_dict` round-trip through JSON."""

    section: ClassVar[str] = "evaluate"

    model: ModelSpec = field(default_factory=ModelSpec)  # "demo", a folder, a HF id or "run:<train run id>"
    backend: str = "hf"  # "hf", "vllm" or "fake"
    benchmarks: list[BenchmarkSource] = field(default_factory=_default_sources)
    limit: int = 20  # items per benchmark (0 = all); a seeded subset
    seed: int = 0  # picks the subset; the same seed gives the same items in every run (paired comparisons)
    # Arithmetic is generated (generator seed 0, stable ids): `limit` items spread over these levels; levels 1-2
    # keep a 135M model above zero.
    arithmetic_levels: list[int] = field(default_factory=lambda: [1, 2])
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # greedy when temperature == 0
    judge: str = KEYWORDS  # "keywords", a guard model, or "strongreject:<chat model>" (harmful prompts; judge.py)
    judge_part: str = "both"  # what a model judge reads: "both" (reasoning and answer), "answer" or "reasoning"
    samples: int = 1  # k samples per item (k > 1 needs temperature > 0): mean accuracy and pass@k
    system_prompt: str | None = None  # prepended as a system turn when set
    reasoning_suffix: str = REASONING_SUFFIX  # appended to reasoning prompts (after a blank line)

    def validate(self) -> None:
        try:
            check_config(self)
        except ConfigError:
            raise
        except DGRError as exc:
            raise ConfigError(str(exc)) from None

    def limit_of(self, source: BenchmarkSource) -> int:
        return self.limit if source.limit is None else source.limit


def check_config(cfg: EvalConfig) -> None:
    """Raise a DGRError naming the first bad field (no model, no data loaded)."""
    if not isinstance(cfg.model, ModelSpec) or not str(cfg.model.ref).strip():
        raise DGRError("evaluate: 'model.ref' must name a model ('demo', a folder, a HF id or run:<id>)")
    if not cfg.benchmarks:
        raise DGRError("evaluate: 'benchmarks' is empty: choose at least one")
    names = [b.name for b in cfg.benchmarks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DGRError(f"evaluate: 'benchmarks' names {dupes} more than once")
    for b in cfg.benchmarks:
        _check_source(b)
    for name in ("limit", "seed", "samples"):
        if not _is_int(getattr(cfg, name)):
            raise DGRError(f"evaluate: '{name}' must be an integer; got {getattr(cfg, name)!r}")
    if cfg.limit < 0:
        raise DGRError(f"evaluate: 'limit' must be 0 (all) or more; got {cfg.limit}")
    bad_levels = [x for x in cfg.arithmetic_levels if x not in LEVELS]
    if not cfg.arithmetic_levels or bad_levels:
        raise DGRError(f"evaluate: 'arithmetic_levels' must be among {list(LEVELS)}; got {cfg.arithmetic_levels}")
    _check_generation(cfg.generation)
    _check_sampling(cfg)


def _check_sampling(cfg: EvalConfig) -> None:
    from dgr_core.evaluate.judge import JUDGE_PARTS

    if not 1 <= cfg.samples <= MAX_SAMPLES:
        raise DGRError(f"evaluate: 'samples' must lie in [1, {MAX_SAMPLES}]; got {cfg.samples}")
    if cfg.samples > 1 and cfg.generation.temperature == 0:
        raise DGRError("evaluate: 'samples' > 1 needs sampling (temperature > 0): greedy samples are identical")
    if cfg.judge_part not in JUDGE_PARTS:
        raise DGRError(f"evaluate: 'judge_part' must be one of {list(JUDGE_PARTS)}; got {cfg.judge_part!r}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_source(b: BenchmarkSource) -> None:
    where = f"evaluate: benchmark {b.name!r}"
    if b.limit is not None and (not _is_int(b.limit) or b.limit < 0):
        raise DGRError(f"{where}: 'limit' must be 0 (all) or more; got {b.limit}")
    if b.path is None:
        if b.name not in BENCHMARKS:
            raise DGRError(f"{where}: unknown; registered: {', '.join(BENCHMARKS)} (or give a JSONL 'path')")
        return
    if not Path(b.path).expanduser().is_file():
        raise DGRError(f"{where}: 'path' {b.path!r} is not a file")
    if b.kind not in KINDS:
        raise DGRError(f"{where}: 'kind' must be one of {list(KINDS)}; got {b.kind!r}")
    if not b.prompt_field:
        raise DGRError(f"{where}: 'prompt_field' is empty")
    if b.kind == "reasoning" and not b.reference_field:
        raise DGRError(f"{where}: a reasoning benchmark needs 'reference_field' (the reference answer)")


def _check_generation(g: GenerationConfig) -> None:
    for name in ("max_new_tokens", "seed", "batch_size"):
        if not _is_int(getattr(g, name)):
            raise DGRError(f"evaluate: 'generation.{name}' must be an integer; got {getattr(g, name)!r}")
    for name in ("temperature", "top_p"):
        if not isinstance(getattr(g, name), int | float):
            raise DGRError(f"evaluate: 'generation.{name}' must be a number; got {getattr(g, name)!r}")
    if not 1 <= g.max_new_tokens <= MAX_BUDGET:
        raise DGRError(f"evaluate: 'generation.max_new_tokens' must lie in [1, {MAX_BUDGET}]; got {g.max_new_tokens}")
    if g.temperature < 0:
        raise DGRError(f"evaluate: 'generation.temperature' must be >= 0 (0 = greedy); got {g.temperature}")
    if not 0 < g.top_p <= 1:
        raise DGRError(f"evaluate: 'generation.top_p' must lie in (0, 1]; got {g.top_p}")
    if g.batch_size < 1:
        raise DGRError(f"evaluate: 'generation.batch_size' must be at least 1; got {g.batch_size}")


def model_label(spec: ModelSpec, backend: str = "hf") -> str:
    """A short human name for a model reference (no model is loaded); a backend other than hf is named, so a
    fake-backend run never passes for the real model."""
    ref = str(spec.ref)
    if ref in DEMO_ALIASES:
        label = "SmolLM2-135M-Instruct (demo)"
    elif ref.startswith("run:"):
        label = ref
    elif Path(ref).expanduser().is_dir():
        label = Path(ref).expanduser().resolve().name
    else:
        label = ref
    label = f"{label}@{spec.revision}" if spec.revision else label
    return label if backend == "hf" else f"{label} [{backend}]"


def judge_of_kind(cfg: EvalConfig, kind: str) -> str:
    """The grader / judge name that scores a benchmark of this kind under `cfg`."""
    return {"reasoning": GRADER_NAME, "harmful": judge_label(cfg.judge, cfg.judge_part),
            "benign": KeywordJudge.judge_name}[kind]


def decoding_record(cfg: EvalConfig) -> dict[str, Any]:
    """The decoding of a run in words and numbers (stored in result.json)."""
    g = cfg.generation
    return {"preset": decoding_label(g.temperature, g.top_p), "temperature": g.temperature, "top_p": g.top_p,
            "samples": cfg.samples, "max_new_tokens": g.max_new_tokens, "seed": g.seed}


def apply_preset(cfg: EvalConfig, preset: str, *, max_new_tokens: int | None = None,
                 samples: int | None = None) -> EvalConfig:
    """`cfg` with the decoding of a preset ("greedy" or "reasoning"); budget and k may be overridden."""
    if preset not in DECODING_PRESETS:
        raise DGRError(f"unknown decoding preset {preset!r}; choose one of {list(DECODING_PRESETS)}")
    p = DECODING_PRESETS[preset]
    gen = replace(cfg.generation, temperature=p["temperature"], top_p=p["top_p"],
                  max_new_tokens=max_new_tokens or cfg.generation.max_new_tokens)
    return replace(cfg, generation=gen, samples=samples or p["samples"])
