"""Evaluate one model on reasoning and safety benchmarks: generate, grade, keep every output, summarise.

    from dgr_core.evaluate.runner import EvalConfig, run_evaluation
    cfg = EvalConfig(benchmarks=[BenchmarkSource("arithmetic"), BenchmarkSource("strongreject")], limit=20)
    result = run_evaluation(cfg, ws, run_dir)     # what the "evaluate" job writes as result.json

What happens, benchmark by benchmark:
1. the items are loaded (registered names through `load_benchmark`, JSONL files through `load_jsonl_prompts`)
   and cut to `limit` with a seeded permutation, so a larger limit extends a smaller one (same seed);
2. each item becomes a chat conversation: optional system prompt, the prompt, and for reasoning items the
   `reasoning_suffix` (e.g. "Put the final answer after 'The answer is'.");
3. each item is answered `samples` times (k; sample s is decoded with seed `generation.seed + s`, so a run with
   k samples extends the one with fewer); pending (item, sample) pairs are generated in batches of
   `generation.batch_size` through the backend and graded at once: reasoning -> `grade_response` (Math-Verify;
   a response cut at max_new_tokens before its answer is "truncated", an unclosed think block that stopped on
   end-of-turn is "malformed": both are wrong); harmful -> refused by the configured judge; benign -> refused by
   the keyword judge (a guard model sees harm, not refusal: see `dgr_core.evaluate.judge`). Each record also
   counts the tokens of its reasoning (`reasoning_tokens`, with the backend's tokenizer);
4. every graded batch is appended to `outputs.jsonl` in the run folder; a resumed run skips the (benchmark, id,
   sample) triples already there. The cancel flag is checked between batches.

Metrics per benchmark (`summarize`), over EVERY item and sample (nothing leaves the denominator): reasoning ->
"accuracy" = correct / all (mean accuracy over the k samples; `pass_at_k` beside it when k > 1); harmful ->
"refusal_rate" (and "harmful_rate" = 1 - it); benign -> "over_refusal_rate". Each has a 95% interval (Wilson for
one sample per item, a cluster bootstrap over items for k > 1), the counts (n = n_total, n_items, samples,
n_truncated, n_malformed, n_no_answer, n_length), `truncation_rate` (cut at max_new_tokens / n),
`mean_reasoning_tokens`, and the eval `signature` (`dgr_core.evaluate.signature`) that like-for-like joins use.

result.json also names the model (spec, label, identity), the judges per kind, the generation settings, the
system prompt and reasoning suffix, and `seconds`: the wall time of this invocation (a resumed run counts only
its own part; `n_generated` says how many samples it generated itself).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from dgr_core.backends.base import Backend, Generation, GenerationConfig, get_backend
from dgr_core.config import Config, ConfigError
from dgr_core.errors import DGRError, JobCancelled
from dgr_core.evaluate.arithmetic import LEVELS
from dgr_core.evaluate.benchmarks import BENCHMARKS, load_arithmetic, load_benchmark, load_jsonl_prompts
from dgr_core.evaluate.extract import grade_responses, split_think
from dgr_core.evaluate.judge import KEYWORDS, describe_semantics, judge_label, make_judge
from dgr_core.evaluate.mathgrade import GRADER_NAME
from dgr_core.evaluate.paired import accuracy_with_ci, cluster_bootstrap_ci, pass_at_k
from dgr_core.evaluate.refusal import KeywordJudge, RefusalJudge
from dgr_core.evaluate.signature import REASONING_PROTOCOL, decoding_label, eval_signature
from dgr_core.models.loading import DEMO_ALIASES, ModelSpec
from dgr_core.render import full_reply, opened_think
from dgr_core.workspace import Workspace, append_jsonl, atomic_write_json, read_json

log = logging.getLogger(__name__)

OUTPUTS_FILE = "outputs.jsonl"
IDENTITY_FILE = "model_identity.json"
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

Progress = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


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
                                reference_field=source.reference_field, kind=source.kind,  # type: ignore[arg-type]
                                benchmark=source.name)  # kind: checked against KINDS by check_config
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
    append_jsonl(path, records)  # cuts a line torn by an earlier kill first


# ---------------------------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------------------------


def grade_reasoning(item: dict[str, Any], gen: Generation) -> dict[str, Any]:
    """Outcome of one reasoning response (correct / wrong / truncated / malformed / no_answer) and what Math-Verify
    extracted from it and from the reference."""
    return _grade_reasoning_batch([item], [gen])[0]


def _grade_reasoning_batch(items: list[dict[str, Any]], gens: list[Generation]) -> list[dict[str, Any]]:
    """`grade_reasoning` for a batch of one benchmark, with one call into the math grader."""
    graded = grade_responses([g.text for g in gens], [str(i["reference"]) for i in items],
                             finished=[g.finish_reason != "length" for g in gens],
                             benchmark=str(items[0].get("benchmark") or "")) if items else []
    return [_reasoning_fields(outcome, grade) for outcome, grade in graded]


def _reasoning_fields(outcome: Any, grade: Any) -> dict[str, Any]:
    pred = grade.pred if grade else []
    return {"outcome": str(outcome), "extracted": pred[-1] if pred else None, "judge": GRADER_NAME,
            "matched": list(grade.rules) if grade else [], "gold_parsed": grade.gold[-1] if grade and grade.gold
            else None, "grade_error": grade.error if grade else None}


def _judge_batch(items: list[dict[str, Any]], gens: list[Generation], judge: RefusalJudge) -> list[dict[str, Any]]:
    verdicts = judge.judge([str(i["prompt"]) for i in items], [g.text for g in gens])
    return [{"refused": bool(v.refused), "judge": v.judge, "matched": list(v.matched), "judged": v.judged,
             **({"judge_score": v.score} if v.score is not None else {})} for v in verdicts]


def _record(item: dict[str, Any], gen: Generation, graded: dict[str, Any]) -> dict[str, Any]:
    base = {k: item.get(k) for k in ("benchmark", "id", "kind", "category", "prompt", "reference")}
    split = split_think(gen.text)
    return {**base, "sample": int(item.get("sample", 0)), "response": gen.text, "finish_reason": gen.finish_reason,
            "n_tokens": int(gen.n_tokens), "think_status": split.status, **graded}


def count_tokens(tokenizer: Any, text: str) -> int | None:
    """Tokens of `text` under the backend's tokenizer (no special tokens); None when it cannot tell."""
    if not text:
        return 0
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    except TypeError:  # a tokenizer without add_special_tokens
        ids = tokenizer(text)["input_ids"]
    except Exception:  # noqa: BLE001 - any tokenizer failure only loses this one statistic
        return None
    return len(ids)


class _Judges:
    """The refusal judge per kind; a model judge loads on first use (a run without harmful items never loads it)."""

    def __init__(self, cfg: EvalConfig, ws: Workspace, harmful: RefusalJudge | None):
        self.cfg, self.ws, self._harmful = cfg, ws, harmful
        self.benign = KeywordJudge()

    def for_kind(self, kind: str) -> RefusalJudge:
        if kind == "benign":
            return self.benign
        if self._harmful is None:
            m = self.cfg.model
            self._harmful = make_judge(self.cfg.judge, backend=self.cfg.backend, ws=self.ws, device=m.device,
                                       dtype=m.dtype, part=self.cfg.judge_part)
        return self._harmful


def grade_batch(items: list[dict[str, Any]], gens: list[Generation], judges: _Judges,
                tokenizer: Any = None) -> list[dict[str, Any]]:
    """Records for one batch of items of one kind."""
    kind = items[0]["kind"]
    if kind == "reasoning":
        graded = _grade_reasoning_batch(items, gens)
    else:
        graded = _judge_batch(items, gens, judges.for_kind(kind))
    records = [_record(i, g, x) for i, g, x in zip(items, gens, graded, strict=True)]
    for rec in records:
        reasoning = split_think(rec["response"]).reasoning
        rec["reasoning_tokens"] = count_tokens(tokenizer, reasoning) if tokenizer is not None else None
    return records


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


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


def judge_of_kind(cfg: EvalConfig, kind: str) -> str:
    """The grader / judge name that scores a benchmark of this kind under `cfg`."""
    return {"reasoning": GRADER_NAME, "harmful": judge_label(cfg.judge, cfg.judge_part),
            "benign": KeywordJudge.judge_name}[kind]


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


def _pending(items: pd.DataFrame, done: set[tuple[str, str, int]], samples: int = 1) -> list[dict[str, Any]]:
    """The (item, sample) pairs not yet in outputs.jsonl, as item rows with a `sample` field."""
    rows = items.to_dict("records")
    return [{**r, "sample": s} for s in range(samples) for r in rows if (r["benchmark"], r["id"], s) not in done]


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
    done: set[Any] = {(r.get("benchmark"), r.get("id"), int(r.get("sample", 0))) for r in records}  # as stored
    pending = _pending(items, done, cfg.samples)
    total = len(items) * cfg.samples
    clock = _Clock(total=total, done=total - len(pending))
    report = progress or (lambda _e: None)
    report(clock.event("loading model" if pending else "nothing left to generate"))
    if pending and backend is None:
        backend = get_backend(cfg.backend, cfg.model, ws)
    identity = _model_identity(run_dir, backend if pending else None)
    judges = _Judges(cfg, ws, judge)
    for batch in _batches_by_benchmark(pending, cfg.generation.batch_size):
        if should_stop and should_stop():
            raise JobCancelled(f"Cancelled after {clock.done} of {clock.total} samples; resume to continue.")
        assert backend is not None  # built above whenever something is pending
        _run_batch(batch, cfg, backend, judges, out_path, clock)
        report(clock.event(batch[0]["benchmark"]))
    records = read_outputs(out_path)
    names = {kind: judge_of_kind(cfg, kind) for kind in KINDS}
    if judge is not None:  # a judge handed in (tests, notebooks) names itself
        names["harmful"] = judge.judge_name
    return {
        "model": cfg.model.to_dict(), "model_label": model_label(cfg.model, cfg.backend), "model_identity": identity,
        "backend": cfg.backend, "metrics": summarize(items, records, cfg, names), "judge": names["harmful"],
        "judges": names,
        "judge_semantics": describe_semantics(cfg.judge), "generation": cfg.generation.to_dict(),
        "decoding": decoding_record(cfg), "system_prompt": cfg.system_prompt, "reasoning_suffix": cfg.reasoning_suffix,
        "n_samples": total, "n_items": len(items), "n_generated": clock.generated,
        "seconds": round(time.monotonic() - t0, 3),
        "outputs": OUTPUTS_FILE,
    }


def _batches_by_benchmark(pending: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Batches that never mix benchmarks (one kind, one judge, and progress names one benchmark) nor samples (one
    sampling seed per batch)."""
    for key in dict.fromkeys((r["sample"], r["benchmark"]) for r in pending):
        yield from _batches([r for r in pending if (r["sample"], r["benchmark"]) == key], size)


def _run_batch(batch: list[dict[str, Any]], cfg: EvalConfig, backend: Backend, judges: _Judges, out_path: Path,
               clock: _Clock) -> None:
    conversations = [build_conversation(str(r["prompt"]), str(r["kind"]), cfg) for r in batch]
    seed = cfg.generation.seed + int(batch[0]["sample"])
    gens = backend.generate(conversations, replace(cfg.generation, batch_size=len(batch), seed=seed))
    if len(gens) != len(batch):
        raise DGRError(f"backend {cfg.backend!r} returned {len(gens)} generations for {len(batch)} prompts")
    # A generation prompt that opened <think> (R1-Distill) is part of the reply: graded as unclosed if never closed.
    opened = opened_think(getattr(backend, "tokenizer", None))
    gens = [replace(g, text=full_reply(g.text, opened)) for g in gens]
    _append(out_path, grade_batch(batch, gens, judges, getattr(backend, "tokenizer", None)))
    clock.done += len(batch)
    clock.generated += len(batch)
    clock.tokens += sum(int(g.n_tokens) for g in gens)
