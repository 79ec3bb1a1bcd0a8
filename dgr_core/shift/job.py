"""Job kinds of the shift page: work too slow for the page's script thread, run in a worker process.

- `project`: a 2-D (or k-D) map of the cached embeddings of several scored datasets (UMAP on more than
  `analysis.UMAP_INLINE_MAX` points takes from seconds to minutes, plus ~10 s of numba compilation). The result is
  stored in the projection cache under the same key the page computes from the same embeddings, so the page
  shows it as soon as the job is done.

      submit(ws, "project", {"datasets": ["star1", "star1-refined"], "score": ScoreConfig(...).to_dict(),
                             "method": "umap", "seed": 0, "n_components": 2})

- `embed_sentences`: sentence embeddings (all-MiniLM-L6-v2) of a text column of datasets, for the output-similarity
  statistic; cached per text, so a resumed job skips what is done.

      submit(ws, "embed_sentences", {"datasets": ["star1", "star1-self"], "column": "answer"})

Neither loads the target model (they read caches), so neither takes the device lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from dgr_core.config import Config, require
from dgr_core.errors import DataError, JobCancelled
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import EmbedResult, ProjectResult
from dgr_core.scoring.api import ScoreConfig
from dgr_core.shift.projection import METHODS


@dataclass
class ProjectConfig(Config):
    section: ClassVar[str] = "project"

    datasets: list[str]  # scored datasets whose embeddings are stacked, in this order
    score: ScoreConfig = field(default_factory=ScoreConfig)  # which scores (model, backend, settings)
    method: str = "umap"  # "umap" or "pca"
    n_components: int = 2
    seed: int = 0
    segment: str = "total"  # NLL column carried into the map's table (does not change the coordinates)

    def validate(self) -> None:
        _check_datasets(self.datasets)
        require(self.method in METHODS, "config.method", f"must be one of {METHODS}, not {self.method!r}")
        require(self.n_components >= 1, "config.n_components", "must be at least 1")


def _check_datasets(datasets: list[str]) -> None:
    require(bool(datasets) and all(datasets), "config.datasets", "must be a non-empty list of dataset names")


def run_project(cfg: ProjectConfig, ctx) -> dict[str, Any]:
    from dgr_core.shift import analysis

    ctx.progress({"done": 0, "total": 3, "unit": "steps", "message": "reading cached embeddings"})
    handle = analysis.model_handle(cfg.score.model, cfg.score.backend, ctx.ws)
    sets = {}
    for name in cfg.datasets:
        scored = analysis.load_scored_set(ctx.ws, name, cfg.score, handle)
        if scored is None:
            raise DataError(f"dataset '{name}' is not fully scored with this model and settings; score it first")
        sets[name] = scored
    if ctx.should_stop():
        raise JobCancelled("Cancelled before projecting.")
    X, _ = analysis.map_points(sets, cfg.segment)
    ctx.progress({"done": 1, "total": 3, "unit": "steps", "message": f"{cfg.method} on {len(X)} points"})
    proj = analysis.compute_projection(ctx.ws, X, cfg.method, n_components=cfg.n_components, seed=cfg.seed)
    ctx.progress({"done": 3, "total": 3, "unit": "steps", "message": "done"})
    return {"datasets": cfg.datasets, "n": int(len(X)), "method": proj.method, "requested": cfg.method,
            "note": proj.note, "n_components": cfg.n_components, "seed": cfg.seed}


@dataclass
class EmbedConfig(Config):
    section: ClassVar[str] = "embed_sentences"

    datasets: list[str]  # datasets whose texts are embedded
    column: Literal["prompt", "reasoning", "answer"] = "answer"  # the text column to embed

    def validate(self) -> None:
        _check_datasets(self.datasets)


def run_embed(cfg: EmbedConfig, ctx) -> dict[str, Any]:
    from dgr_core.data.store import DatasetStore
    from dgr_core.shift import analysis

    store = DatasetStore(ctx.ws)
    texts = []
    for name in cfg.datasets:
        texts += store.load(name)[cfg.column].fillna("").astype(str).tolist()
    todo = analysis.sentence_todo(texts, ctx.ws)
    batch = 256  # texts per saved chunk: a cancelled job keeps every finished chunk
    for start in range(0, len(todo), batch):
        if ctx.should_stop():
            raise JobCancelled(f"Cancelled after {start} of {len(todo)} texts; finished ones are cached.")
        analysis.sentence_embeddings(todo[start : start + batch], ctx.ws)
        ctx.progress({"done": min(start + batch, len(todo)), "total": len(todo), "unit": "texts"})
    return {"datasets": cfg.datasets, "column": cfg.column, "n_texts": len(set(texts)), "computed": len(todo)}


PROJECT = register_kind(JobKind("project", ProjectConfig, ProjectResult, run_project, uses_model=False,
                      describe=lambda c: f"{c.method} map of {', '.join(c.datasets)}"))
EMBED = register_kind(JobKind("embed_sentences", EmbedConfig, EmbedResult, run_embed, uses_model=False,
                      describe=lambda c: f"sentence embeddings of {', '.join(c.datasets)}"))
validate_project, validate_embed = PROJECT.validate, EMBED.validate
