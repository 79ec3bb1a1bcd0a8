"""Score a dataset under a target model, reusing every cached sample and computing only the missing ones.

    from dgr_core.scoring.api import ScoreConfig, score_dataset
    result = score_dataset(ws, "demo-external-refusal", ScoreConfig())
    result.table            # one row per sample: id, nll_{reasoning,answer,total}, ppl_*, n_tokens_*, ...
    result.arrays(id)       # per-token ids, log-probs, ranks, segments and the pooled embedding
    result.embeddings()     # [n, hidden] in table order

Missing samples are processed longest first in chunks of `chunk_size`; each finished chunk is written to the cache
at once, so a killed or cancelled run resumes from where it stopped. `progress` receives a dict per batch (done,
total, tokens/s, padding fraction, ETA); `should_stop` is polled between batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from dgr_core.config import Config
from dgr_core.errors import DataError, JobCancelled
from dgr_core.models.loading import ModelSpec
from dgr_core.render import RENDER_VERSION
from dgr_core.scoring.cache import SampleArrays, ScoreStore, canonical_json, sample_key, sha256
from dgr_core.scoring.engine import BatchStats, TokenScores
from dgr_core.scoring.segments import ANSWER, REASONING, Encoded, RenderConfig, render
from dgr_core.workspace import Workspace

OPERATION, VERSION = "score", 1
NLL_SEGMENTS = ("reasoning", "answer", "total")  # the per-sample NLL columns: nll_<segment>
Progress = Callable[[dict[str, Any]], None]


@dataclass
class ScoreConfig(Config):
    """How to score. Fields marked (key) change the output and go into the cache key."""

    section: ClassVar[str] = "score"

    model: ModelSpec = field(default_factory=ModelSpec)  # (key, through its identity) the target model
    backend: str = "hf"  # (key) "hf", "vllm" or "fake"
    mode: Literal["chat", "raw"] = "chat"  # (key) "chat": the model's chat template; "raw": prompt + response as plain text
    layer: int = -1  # (key) hidden layer pooled into the embedding; -1 = last (after the final norm)
    max_length: int = 4096  # (key) tokens; longer samples are cut and flagged `truncated`
    think_open: str = "<think>\n"  # (key) how reasoning is opened in the assistant turn
    think_close: str = "\n</think>\n\n"  # (key) and closed before the answer
    token_budget: int = 0  # tokens per batch (batch x padded length); 0 = backend default (CPU 1k, GPU 64k)
    chunk_size: int = 64  # samples per cache chunk = the unit a resumed job skips

    def render_config(self) -> RenderConfig:
        return RenderConfig(self.mode, self.think_open, self.think_close, self.max_length)


def op_meta(identity: dict[str, Any], cfg: ScoreConfig) -> dict[str, Any]:
    """Everything except the sample text that determines a score."""
    settings = {k: getattr(cfg, k) for k in ("mode", "layer", "max_length", "think_open", "think_close")}
    settings["render"] = RENDER_VERSION  # how a row becomes ids (dgr_core.render): a new version re-scores
    model = {k: v for k, v in identity.items() if k not in ("name", "n_params", "architecture")}
    return {"operation": OPERATION, "version": VERSION, "model": model, "settings": settings}


def text_hash(row: dict[str, Any]) -> str:
    fields = [str(row.get(k) or "") for k in ("prompt", "reasoning", "answer")]
    return sha256(canonical_json([*fields, row.get("think_status") == "empty"]))


@dataclass
class ScoreResult:
    store: ScoreStore
    ids: list[str]
    keys: list[str]
    table: pd.DataFrame
    computed: int  # samples computed in this call (0 = full cache hit)

    def arrays(self, sample_id: str) -> SampleArrays:
        return self.store.arrays(self.keys[self.ids.index(sample_id)])

    def embeddings(self) -> np.ndarray:
        return self.store.embeddings(self.keys)


def sample_stats(ts: TokenScores) -> dict[str, Any]:
    """Per-sample NLL / perplexity by segment and token counts (fp32, before the cache's float16 rounding)."""
    nll = -ts.logprobs.astype(np.float64)
    row: dict[str, Any] = {"sample_key": ts.key, "truncated": bool(ts.truncated)}
    for name, mask in (("reasoning", ts.segments == REASONING), ("answer", ts.segments == ANSWER),
                       ("total", np.ones_like(ts.segments, dtype=bool))):
        n = int(mask.sum())
        row[f"n_tokens_{name}"] = n
        row[f"nll_{name}"] = float(nll[mask].mean()) if n else float("nan")
        row[f"ppl_{name}"] = float(np.exp(row[f"nll_{name}"])) if n else float("nan")
    row["sum_logprob"] = float(ts.logprobs.astype(np.float64).sum())
    row["mean_rank_log2"] = float(np.log2(ts.ranks).mean()) if len(ts.ranks) else float("nan")
    return row


def score_frame(ws: Workspace, df: pd.DataFrame, cfg: ScoreConfig, *, backend=None,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> ScoreResult:
    """Score the rows of a canonical frame (cache first). `backend` may be passed to reuse a loaded model."""
    if df.empty:
        raise DataError("The dataset has no rows to score.")
    if backend is None:
        from dgr_core.backends import get_backend

        backend = get_backend(cfg.backend, cfg.model, ws)
    store = ScoreStore(ws.scores, op_meta(backend.identity(), cfg))
    rows = df.to_dict("records")
    keys = [sample_key(store.key, text_hash(r)) for r in rows]
    todo = [(k, r) for k, r in dict(zip(keys, rows, strict=True)).items() if k in set(store.missing(keys))]
    if todo:
        _compute(store, backend, todo, cfg, progress, should_stop)
    table = store.table(keys)
    table.insert(0, "id", [str(r["id"]) for r in rows])
    return ScoreResult(store, [str(r["id"]) for r in rows], keys, table, len(todo))


def score_dataset(ws: Workspace, dataset: str, cfg: ScoreConfig, **kwargs) -> ScoreResult:
    from dgr_core.data.store import DatasetStore

    return score_frame(ws, DatasetStore(ws).load(dataset), cfg, **kwargs)


def _compute(store: ScoreStore, backend, todo: list[tuple[str, dict]], cfg: ScoreConfig,
             progress: Progress | None, should_stop: Callable[[], bool] | None) -> None:
    rcfg = cfg.render_config()
    encoded = [render(r, backend.tokenizer, rcfg, key=k) for k, r in todo]
    encoded.sort(key=lambda e: -len(e.input_ids))
    meter = _Meter(len(encoded), sum(len(e.input_ids) for e in encoded), progress, should_stop)
    for start in range(0, len(encoded), cfg.chunk_size):
        if should_stop and should_stop():
            raise JobCancelled(f"Cancelled after {start} of {len(encoded)} samples; finished chunks are cached.")
        chunk: list[Encoded] = encoded[start : start + cfg.chunk_size]
        scores = list(backend.score(chunk, layer=cfg.layer, token_budget=cfg.token_budget, on_batch=meter.batch))
        table = pd.DataFrame([sample_stats(s) for s in scores])
        store.add_chunk(table, [SampleArrays(s.token_ids, s.logprobs, s.ranks, s.segments, s.embedding)
                                for s in scores])
        meter.chunk_done()


class _Meter:
    """Turns batch timings into progress events: done/total, tokens/s, padding fraction, ETA."""

    def __init__(self, total: int, total_tokens: int, progress: Progress | None,
                 should_stop: Callable[[], bool] | None = None):
        self.total, self.total_tokens, self.progress = total, total_tokens, progress
        self.should_stop = should_stop
        self.done = self.tokens = self.padded = 0
        self.start = time.perf_counter()

    def batch(self, b: BatchStats) -> None:
        self.done += b.samples
        self.tokens += b.tokens
        self.padded += b.padded_tokens
        self._emit()
        # Between batches, not only between chunks: a long chunk must not delay a cancel by minutes.
        if self.should_stop and self.should_stop():
            raise JobCancelled(f"Cancelled after {self.done} of {self.total} samples; finished chunks are cached.")

    def chunk_done(self) -> None:
        self._emit(message="chunk cached")

    def _emit(self, message: str = "") -> None:
        if not self.progress:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.tokens / elapsed
        self.progress({
            "done": self.done, "total": self.total, "unit": "samples", "tokens": self.tokens,
            "tokens_per_s": round(rate, 1), "padding": round(1 - self.tokens / max(self.padded, 1), 4),
            "eta_s": round((self.total_tokens - self.tokens) / rate, 1) if rate > 0 else None,
            "message": message,
        })
