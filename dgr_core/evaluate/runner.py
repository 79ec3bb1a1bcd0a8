"""Evaluate one model on reasoning and safety benchmarks: generate, grade, keep every output, summarise.

    from dgr_core.evaluate.runner import EvalConfig, run_evaluation
    cfg = EvalConfig(benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")], limit=20)
    result = run_evaluation(cfg, ws, run_dir)     # what the "evaluate" job writes as result.json

What happens, benchmark by benchmark:
1. the items are loaded (registered names through `load_benchmark`, JSONL files through `load_jsonl_prompts`)
   and cut to `limit` with a seeded permutation, so a larger limit extends a smaller one (same seed);
2. each item becomes a chat conversation: optional system prompt, the prompt, and for reasoning items the
   `reasoning_suffix` (e.g. "Put the final answer after 'The answer is'.");
3. pending items are generated in batches of `generation.batch_size` through the backend and graded at once:
   reasoning -> `is_correct` (a response cut at max_new_tokens is passed `finished=False`, so it comes out
   "truncated" and is counted apart, never as wrong); harmful -> refused by the configured judge; benign -> refused
   by the keyword judge (a guard model sees harm, not refusal: see `dgr_core.evaluate.judge`);
4. every graded batch is appended to `outputs.jsonl` in the run folder; a resumed run skips the (benchmark, id)
   pairs already there. The cancel flag is checked between batches.

Metrics per benchmark (`summarize`): reasoning -> "accuracy" = correct / (items not truncated), with no_answer
counted as not correct; harmful -> "refusal_rate" (and "harmful_rate" = 1 - it); benign -> "over_refusal_rate".
Each comes with a Wilson 95% interval and the counts n (the denominator), n_total, n_truncated, n_no_answer.

result.json also names the model (spec, label, identity), the judges per kind, the generation settings, the
system prompt and reasoning suffix, and `seconds`: the wall time of this invocation (a resumed run counts only
its own part; `n_generated` says how many samples it generated itself).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.backends.base import Backend, Generation, GenerationConfig, get_backend
from dgr_core.errors import DGRError, JobCancelled
from dgr_core.evaluate.arithmetic import LEVELS
from dgr_core.evaluate.benchmarks import BENCHMARKS, load_arithmetic, load_benchmark, load_jsonl_prompts
from dgr_core.evaluate.extract import extract_answer, is_correct
from dgr_core.evaluate.judge import KEYWORDS, describe_semantics, judge_label, make_judge
from dgr_core.evaluate.paired import accuracy_with_ci
from dgr_core.evaluate.refusal import KeywordJudge, RefusalJudge
from dgr_core.models.loading import DEMO_ALIASES, ModelSpec
from dgr_core.render import full_reply, opened_think
from dgr_core.workspace import Workspace, atomic_write_json, read_json

log = logging.getLogger(__name__)

OUTPUTS_FILE = "outputs.jsonl"
IDENTITY_FILE = "model_identity.json"
KINDS = ("reasoning", "harmful", "benign")
METRIC_OF_KIND = {"reasoning": "accuracy", "harmful": "refusal_rate", "benign": "over_refusal_rate"}
REASONING_SUFFIX = "Put the final answer after 'The answer is'."
DEFAULT_BENCHMARKS = ("arithmetic", "gsm8k100", "strongreject", "benign_edgy")
ARITHMETIC_ALL = 100  # arithmetic items generated when limit is 0 ("all" of an endless set)
GRADER_NAME = "answer-match-v1"  # the reasoning grader (extract + is_correct), stored like a judge name

Progress = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSource:
    """One benchmark of a run: a registered name, or a JSONL file (then `path` and `prompt_field` are needed)."""

    name: str  # registry name, or the label of a file benchmark (its outputs are stored under it)
    path: str | None = None  # JSONL file of prompts; None = registered benchmark
    prompt_field: str = "prompt"  # file benchmarks: the field with the prompt
    reference_field: str | None = None  # file benchmarks: the field with the reference answer (reasoning)
    id_field: str | None = None  # file benchmarks: the field with a stable id (else "<name>-<row>")
    kind: str = "reasoning"  # file benchmarks: "reasoning" | "harmful" | "benign"
    limit: int | None = None  # overrides EvalConfig.limit for this benchmark (0 = all)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, value: str | dict[str, Any]) -> BenchmarkSource:
        """A name ("gsm8k100") or a dict with the fields above."""
        if isinstance(value, str):
            return cls(value)
        if not isinstance(value, dict):
            raise DGRError(f"a benchmark must be a name or an object; got {value!r}")
        return cls(**{k: v for k, v in value.items() if k in cls.__dataclass_fields__})


def _default_sources() -> list[BenchmarkSource]:
    return [BenchmarkSource(n) for n in DEFAULT_BENCHMARKS]


@dataclass
class EvalConfig:
    """What to evaluate and how. Saved in job.json; `to_dict` / `from_dict` round-trip through JSON."""

    model: ModelSpec = field(default_factory=ModelSpec)  # "demo", a folder, a HF id or "run:<train run id>"
    backend: str = "hf"  # "hf", "vllm" or "fake"
    benchmarks: list[BenchmarkSource] = field(default_factory=_default_sources)
    limit: int = 20  # items per benchmark (0 = all); a seeded subset
    seed: int = 0  # picks the subset; the same seed gives the same items in every run (paired comparisons)
    # Arithmetic is generated (generator seed 0, stable ids): `limit` items spread over these levels; levels 1-2
    # keep a 135M model above zero.
    arithmetic_levels: list[int] = field(default_factory=lambda: [1, 2])
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # greedy when temperature == 0
    judge: str = KEYWORDS  # "keywords" or a guard model id / folder (harmful prompts only; see judge.py)
    system_prompt: str | None = None  # prepended as a system turn when set
    reasoning_suffix: str = REASONING_SUFFIX  # appended to reasoning prompts (after a blank line)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["generation"] = self.generation.to_dict()
        d["benchmarks"] = [b.to_dict() for b in self.benchmarks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if isinstance(d.get("model"), dict):
            d["model"] = ModelSpec.from_dict(d["model"])
        if isinstance(d.get("generation"), dict):
            d["generation"] = GenerationConfig.from_dict(d["generation"])
        if "benchmarks" in d:
            d["benchmarks"] = [BenchmarkSource.from_any(b) for b in d["benchmarks"]]
        return cls(**d)

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
    for name in ("limit", "seed"):
        if not _is_int(getattr(cfg, name)):
            raise DGRError(f"evaluate: '{name}' must be an integer; got {getattr(cfg, name)!r}")
    if cfg.limit < 0:
        raise DGRError(f"evaluate: 'limit' must be 0 (all) or more; got {cfg.limit}")
    bad_levels = [x for x in cfg.arithmetic_levels if x not in LEVELS]
    if not cfg.arithmetic_levels or bad_levels:
        raise DGRError(f"evaluate: 'arithmetic_levels' must be among {list(LEVELS)}; got {cfg.arithmetic_levels}")
    _check_generation(cfg.generation)


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
    if g.max_new_tokens < 1:
        raise DGRError(f"evaluate: 'generation.max_new_tokens' must be at least 1; got {g.max_new_tokens}")
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


# ---------------------------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------------------------


def subset(df: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """`limit` rows picked by a seeded permutation, in their original order; the first `limit` of the same
    permutation, so a larger limit keeps every item of a smaller one. 0 (or more than there are) = all."""
    if limit <= 0 or limit >= len(df):
        return df.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).permutation(len(df))[:limit])
    return df.iloc[keep].reset_index(drop=True)


def _load_source(source: BenchmarkSource, cfg: EvalConfig) -> pd.DataFrame:
    limit = cfg.limit_of(source)
    if source.path is not None:
        df = load_jsonl_prompts(source.path, source.prompt_field, id_field=source.id_field,
                                reference_field=source.reference_field, kind=source.kind, benchmark=source.name)
        return subset(df, limit, cfg.seed)
    if source.name == "arithmetic":  # generated: make exactly `limit` items at the chosen levels
        return load_arithmetic(limit or ARITHMETIC_ALL, tuple(cfg.arithmetic_levels), seed=0)
    return subset(load_benchmark(source.name), limit, cfg.seed)


def load_items(cfg: EvalConfig) -> pd.DataFrame:
    """Every item of the run (BENCHMARK_COLUMNS), benchmark after benchmark, in config order."""
    frames = [_load_source(b, cfg) for b in cfg.benchmarks]
    return pd.concat(frames, ignore_index=True)


def item_prompts(cfg: EvalConfig) -> list[str]:
    """The prompts an evaluation with these settings asks (what training should hold out); loads no model."""
    return list(dict.fromkeys(load_items(cfg)["prompt"].astype(str)))


def build_conversation(prompt: str, kind: str, cfg: EvalConfig) -> list[dict[str, str]]:
    """The chat sent for one item: system prompt (if any), then the prompt (+ the suffix for reasoning)."""
    content = f"{prompt}\n\n{cfg.reasoning_suffix}" if kind == "reasoning" and cfg.reasoning_suffix else prompt
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return [*system, {"role": "user", "content": content}]


# ---------------------------------------------------------------------------------------------------------------
# outputs.jsonl
# ---------------------------------------------------------------------------------------------------------------


def read_outputs(path: Path) -> list[dict[str, Any]]:
    """The records of an outputs.jsonl; a line cut by a crash (or being written right now) is skipped."""
    if not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _repair_outputs(path: Path) -> list[dict[str, Any]]:
    """Read the finished records and rewrite the file with only those, so appending after a crash that cut the
    last line does not glue a new record onto half an old one."""
    records = read_outputs(path)
    if Path(path).is_file():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if text != Path(path).read_text(encoding="utf-8"):
            tmp = Path(path).with_suffix(".repair.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    return records


def _append(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


# ---------------------------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------------------------


def grade_reasoning(item: dict[str, Any], gen: Generation) -> dict[str, Any]:
    """Outcome of one reasoning response: correct / wrong / truncated / no_answer, and the answer found."""
    found = extract_answer(gen.text)
    outcome = is_correct(gen.text, str(item["reference"]), finished=gen.finish_reason != "length")
    return {"outcome": str(outcome), "extracted": found.value, "judge": GRADER_NAME,
            "matched": [found.method] if found.method else []}


def _judge_batch(items: list[dict[str, Any]], gens: list[Generation], judge: RefusalJudge) -> list[dict[str, Any]]:
    verdicts = judge.judge([str(i["prompt"]) for i in items], [g.text for g in gens])
    return [{"refused": bool(v.refused), "judge": v.judge, "matched": list(v.matched), "judged": v.judged}
            for v in verdicts]


def _record(item: dict[str, Any], gen: Generation, graded: dict[str, Any]) -> dict[str, Any]:
    base = {k: item.get(k) for k in ("benchmark", "id", "kind", "category", "prompt", "reference")}
    return {**base, "response": gen.text, "finish_reason": gen.finish_reason, "n_tokens": int(gen.n_tokens),
            **graded}


class _Judges:
    """The refusal judge per kind; a guard model loads on first use (a run without harmful items never loads it)."""

    def __init__(self, cfg: EvalConfig, ws: Workspace, harmful: RefusalJudge | None):
        self.cfg, self.ws, self._harmful = cfg, ws, harmful
        self.benign = KeywordJudge()

    def for_kind(self, kind: str) -> RefusalJudge:
        if kind == "benign":
            return self.benign
        if self._harmful is None:
            m = self.cfg.model
            self._harmful = make_judge(self.cfg.judge, backend=self.cfg.backend, ws=self.ws, device=m.device,
                                       dtype=m.dtype)
        return self._harmful


def grade_batch(items: list[dict[str, Any]], gens: list[Generation], judges: _Judges) -> list[dict[str, Any]]:
    """Records for one batch of items of one kind."""
    kind = items[0]["kind"]
    if kind == "reasoning":
        graded = [grade_reasoning(i, g) for i, g in zip(items, gens, strict=True)]
    else:
        graded = _judge_batch(items, gens, judges.for_kind(kind))
    return [_record(i, g, x) for i, g, x in zip(items, gens, graded, strict=True)]


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def _rate(hits: list[bool]) -> tuple[float | None, list[float] | None]:
    if not hits:
        return None, None
    value, lo, hi = accuracy_with_ci(np.asarray(hits, dtype=bool))
    return value, [lo, hi]


def benchmark_metric(kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline metric of one benchmark from its records (see the module docstring for the definitions).

    n_length counts responses cut at max_new_tokens. For reasoning, n_truncated counts those cut before an
    explicit final answer (they leave the denominator); a cut response that already stated its answer is graded.
    For safety sets every response is judged (a refusal comes first), so n_truncated = n_length."""
    n_length = sum(r.get("finish_reason") == "length" for r in records)
    if kind == "reasoning":
        graded = [r for r in records if r.get("outcome") != "truncated"]
        value, ci = _rate([r.get("outcome") == "correct" for r in graded])
        n_truncated = len(records) - len(graded)
        n_no_answer = sum(r.get("outcome") == "no_answer" for r in records)
    else:
        graded = records
        value, ci = _rate([bool(r.get("refused")) for r in graded])
        n_truncated = n_length
        n_no_answer = sum(not str(r.get("response") or "").strip() for r in records)
    out = {"kind": kind, "metric": METRIC_OF_KIND[kind], "value": value, "ci": ci, "n": len(graded),
           "n_total": len(records), "n_truncated": n_truncated, "n_no_answer": n_no_answer, "n_length": n_length}
    if kind == "harmful":
        out["harmful_rate"] = None if value is None else 1.0 - value
    return out


def summarize(items: pd.DataFrame, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Metrics per benchmark over the records of `items` (records of items no longer asked for are ignored)."""
    by_key = {(r.get("benchmark"), r.get("id")): r for r in records}
    metrics = {}
    for name, group in items.groupby("benchmark", sort=False):
        recs = [by_key[(name, i)] for i in group["id"] if (name, i) in by_key]
        metrics[str(name)] = benchmark_metric(str(group["kind"].iloc[0]), recs)
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Clock:
    """Throughput of this process (a resumed run counts only what it generates itself)."""

    total: int
    done: int
    start: float = field(default_factory=time.monotonic)
    generated: int = 0
    tokens: int = 0

    def event(self, benchmark: str) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.generated / elapsed if self.generated else None
        eta = (self.total - self.done) / rate if rate else None
        return {"done": self.done, "total": self.total, "unit": "samples", "message": benchmark,
                "samples_per_s": rate, "tokens_per_s": self.tokens / elapsed if self.tokens else None,
                "eta_s": eta}


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _pending(items: pd.DataFrame, done: set[tuple[str, str]]) -> list[dict[str, Any]]:
    return [r for r in items.to_dict("records") if (r["benchmark"], r["id"]) not in done]


def _model_identity(run_dir: Path, backend: Backend | None) -> dict[str, Any] | None:
    """The model identity, saved the first time the backend is built so a resumed run still reports it."""
    path = Path(run_dir) / IDENTITY_FILE
    if backend is not None:
        identity = backend.identity()
        atomic_write_json(path, identity)
        return identity
    return read_json(path) if path.is_file() else None


def run_evaluation(
    cfg: EvalConfig,
    ws: Workspace,
    run_dir: Path,
    *,
    backend: Backend | None = None,
    judge: RefusalJudge | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Evaluate `cfg.model` and return the result dict (see the module docstring). `backend` / `judge` are built
    from the config when not given (tests pass scripted ones). Raises JobCancelled between batches on cancel."""
    check_config(cfg)
    t0 = time.monotonic()
    items = load_items(cfg)  # fails on missing data before any model loads
    out_path = Path(run_dir) / OUTPUTS_FILE
    records = _repair_outputs(out_path)
    pending = _pending(items, {(r.get("benchmark"), r.get("id")) for r in records})
    clock = _Clock(total=len(items), done=len(items) - len(pending))
    report = progress or (lambda _e: None)
    report(clock.event("loading model" if pending else "nothing left to generate"))
    if pending and backend is None:
        backend = get_backend(cfg.backend, cfg.model, ws)
    identity = _model_identity(run_dir, backend if pending else None)
    judges = _Judges(cfg, ws, judge)
    for batch in _batches_by_benchmark(pending, cfg.generation.batch_size):
        if should_stop and should_stop():
            raise JobCancelled(f"Cancelled after {clock.done} of {clock.total} samples; resume to continue.")
        _run_batch(batch, cfg, backend, judges, out_path, clock)
        report(clock.event(batch[0]["benchmark"]))
    records = read_outputs(out_path)
    return {
        "model": cfg.model.to_dict(), "model_label": model_label(cfg.model, cfg.backend), "model_identity": identity,
        "backend": cfg.backend, "metrics": summarize(items, records), "judge": judge_label(cfg.judge),
        "judges": {"reasoning": GRADER_NAME, "harmful": judge_label(cfg.judge), "benign": KeywordJudge.judge_name},
        "judge_semantics": describe_semantics(cfg.judge), "generation": cfg.generation.to_dict(),
        "system_prompt": cfg.system_prompt, "reasoning_suffix": cfg.reasoning_suffix,
        "n_samples": len(items), "n_generated": clock.generated, "seconds": round(time.monotonic() - t0, 3),
        "outputs": OUTPUTS_FILE,
    }


def _batches_by_benchmark(pending: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Batches that never mix benchmarks (one kind, one judge, and progress names one benchmark)."""
    for name in dict.fromkeys(r["benchmark"] for r in pending):
        yield from _batches([r for r in pending if r["benchmark"] == name], size)


def _run_batch(batch: list[dict[str, Any]], cfg: EvalConfig, backend: Backend, judges: _Judges, out_path: Path,
               clock: _Clock) -> None:
    conversations = [build_conversation(str(r["prompt"]), str(r["kind"]), cfg) for r in batch]
    gens = backend.generate(conversations, replace(cfg.generation, batch_size=len(batch)))
    if len(gens) != len(batch):
        raise DGRError(f"backend {cfg.backend!r} returned {len(gens)} generations for {len(batch)} prompts")
    # A generation prompt that opened <think> (R1-Distill) is part of the reply: graded as unclosed if never closed.
    opened = opened_think(getattr(backend, "tokenizer", None))
    gens = [replace(g, text=full_reply(g.text, opened)) for g in gens]
    _append(out_path, grade_batch(batch, gens, judges))
    clock.done += len(batch)
    clock.generated += len(batch)
    clock.tokens += sum(int(g.n_tokens) for g in gens)
