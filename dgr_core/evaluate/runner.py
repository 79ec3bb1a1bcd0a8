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

The parts live in their own modules: `config` (EvalConfig, presets, checks), `items` (loading, conversations,
outputs.jsonl), `grading` (Math-Verify and the refusal judges), `metrics` (per-benchmark metrics); this module runs
the loop and re-exports their public names, so `from dgr_core.evaluate.runner import EvalConfig` keeps working.

result.json also names the model (spec, label, identity), the judges per kind, the generation settings, the
system prompt and reasoning suffix, and `seconds`: the wall time of this invocation (a resumed run counts only
its own part; `n_generated` says how many samples it generated itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.backends.base import Backend, get_backend
from dgr_core.errors import DGRError, JobCancelled
from dgr_core.evaluate.config import (
    ARITHMETIC_ALL,
    DECODING_PRESETS,
    DEFAULT_BENCHMARKS,
    KINDS,
    MAX_BUDGET,
    MAX_SAMPLES,
    METRIC_OF_KIND,
    REASONING_SUFFIX,
    BenchmarkSource,
    EvalConfig,
    apply_preset,
    check_config,
    decoding_record,
    judge_of_kind,
    model_label,
)
from dgr_core.evaluate.grading import Judges, count_tokens, grade_batch, grade_reasoning
from dgr_core.evaluate.items import (
    OUTPUTS_FILE,
    append_outputs,
    build_conversation,
    item_prompts,
    load_items,
    read_outputs,
    repair_outputs,
    subset,
)
from dgr_core.evaluate.judge import describe_semantics
from dgr_core.evaluate.metrics import benchmark_metric, rate_with_ci, summarize
from dgr_core.evaluate.refusal import RefusalJudge
from dgr_core.render import full_reply, opened_think
from dgr_core.workspace import Workspace, atomic_write_json, read_json

__all__ = [
    "ARITHMETIC_ALL", "DECODING_PRESETS", "DEFAULT_BENCHMARKS", "KINDS", "MAX_BUDGET", "MAX_SAMPLES",
    "METRIC_OF_KIND", "REASONING_SUFFIX", "BenchmarkSource", "EvalConfig", "apply_preset", "check_config",
    "decoding_record", "judge_of_kind", "model_label", "Judges", "count_tokens", "grade_batch", "grade_reasoning",
    "OUTPUTS_FILE", "append_outputs", "build_conversation", "item_prompts", "load_items", "read_outputs",
    "repair_outputs", "subset", "benchmark_metric", "rate_with_ci", "summarize", "IDENTITY_FILE", "Progress",
    "run_evaluation",
]


log = logging.getLogger(__name__)


IDENTITY_FILE = "model_identity.json"


Progress = Callable[[dict[str, Any]], None]


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
    records = repair_outputs(out_path)
    done: set[Any] = {(r.get("benchmark"), r.get("id"), int(r.get("sample", 0))) for r in records}  # as stored
    pending = _pending(items, done, cfg.samples)
    total = len(items) * cfg.samples
    clock = _Clock(total=total, done=total - len(pending))
    report = progress or (lambda _e: None)
    report(clock.event("loading model" if pending else "nothing left to generate"))
    if pending and backend is None:
        backend = get_backend(cfg.backend, cfg.model, ws)
    identity = _model_identity(run_dir, backend if pending else None)
    judges = Judges(cfg, ws, judge)
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


def _run_batch(batch: list[dict[str, Any]], cfg: EvalConfig, backend: Backend, judges: Judges, out_path: Path,
               clock: _Clock) -> None:
    conversations = [build_conversation(str(r["prompt"]), str(r["kind"]), cfg) for r in batch]
    seed = cfg.generation.seed + int(batch[0]["sample"])
    gens = backend.generate(conversations, replace(cfg.generation, batch_size=len(batch), seed=seed))
    if len(gens) != len(batch):
        raise DGRError(f"backend {cfg.backend!r} returned {len(gens)} generations for {len(batch)} prompts")
    # A generation prompt that opened <think> (R1-Distill) is part of the reply: graded as unclosed if never closed.
    opened = opened_think(getattr(backend, "tokenizer", None))
    gens = [replace(g, text=full_reply(g.text, opened)) for g in gens]
    append_outputs(out_path, grade_batch(batch, gens, judges, getattr(backend, "tokenizer", None)))
    clock.done += len(batch)
    clock.generated += len(batch)
    clock.tokens += sum(int(g.n_tokens) for g in gens)
