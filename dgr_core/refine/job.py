"""The `refine` job kind: the target model rewrites a dataset in its own words (DGR), failed rewrites fall back to
the original, the refined set is saved as a new dataset and, by default, both sets are scored with the same loaded
model (the refined rows and the *whole* parent dataset, which is what the Compare page loads; the parent's scores
are cached per model, so a second run pays only for its new rows) so the Compare page opens on cached scores.

    from dgr_core.jobs import manager
    run = manager.submit(ws, "refine", RefineConfig(dataset="demo-external-refusal", limit=8).to_dict())

Resume: every finished chunk's generations are appended to `generations.jsonl` in the run folder; running the same
run folder again (`dgr jobs resume RUN`) generates only the samples not in it. Cancel is checked between chunks.
The failed samples and their reasons are listed in `fallbacks.jsonl` in the run folder.
result.json: output_dataset, parent, n (input samples), n_output, n_fell_back, fallback_rate, fallback_reasons,
on_failure ("original" or, in self mode, "dropped"), score_op_key, scores (mean NLLs), seconds, samples_per_s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from dgr_core.backends.base import GenerationConfig
from dgr_core.config import Config
from dgr_core.data.loaders import safe_name
from dgr_core.errors import DataError, JobCancelled, SpecError
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import RefineResult
from dgr_core.models.loading import ModelSpec
from dgr_core.refine import engine
from dgr_core.refine.filters import FilterConfig
from dgr_core.refine.templates import check_mode, check_template, default_template, template_hash
from dgr_core.workspace import Workspace

KIND = "refine"


@dataclass
class RefineConfig(Config):
    """One refinement run. Round-trips through `to_dict` / `from_dict` (that dict is the job config)."""

    section: ClassVar[str] = "refine"

    dataset: str = ""  # the dataset to refine (a name in the workspace)
    model: ModelSpec = field(default_factory=ModelSpec)  # the target model: it rewrites in its own words
    backend: str = "hf"  # "hf" (CPU/GPU), "vllm" (GPU) or "fake" (tests)
    mode: str = "joint"  # "joint" (reasoning + answer at once), "separate" (two steps) or "self" (from scratch)
    template: str = ""  # the prompt template; "" = the mode's default (dgr_core.refine.templates)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=512))
    filters: FilterConfig = field(default_factory=FilterConfig)
    output_name: str = ""  # "" = f"{dataset}-refined-{model}" (`-self-` in self mode)
    limit: int | None = None  # refine only the first N samples (quick runs)
    score_after: bool = True  # score the original and the refined set with the loaded model when done
    chunk_size: int = 0  # samples per checkpoint (resume / cancel unit); 0 = generation.batch_size

    @property
    def effective_template(self) -> str:
        return self.template if self.template.strip() else default_template(self.mode)

    @property
    def effective_output(self) -> str:
        return self.output_name.strip() or engine.default_output_name(self.dataset, self.model.ref, self.mode)

    @property
    def effective_chunk(self) -> int:
        return self.chunk_size or self.generation.batch_size


# ---- validation (no model loads here) --------------------------------------------------------------------

def check(cfg: RefineConfig) -> None:
    """After the types: SpecError naming the bad field. Checks the dataset's content too when it is in the default
    workspace (the job checks again against its own workspace before loading the model)."""
    if not cfg.dataset:
        raise SpecError("refine: 'dataset' must be the name of a dataset in the workspace.")
    _check_backend(cfg.backend)
    check_mode(cfg.mode)
    check_template(cfg.effective_template, cfg.mode)
    _check_generation(cfg.generation)
    _check_filters(cfg.filters)
    _check_output(cfg)
    if cfg.limit is not None and (not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise SpecError("refine: 'limit' must be a positive number of samples, or empty for all.")
    if cfg.chunk_size < 0:
        raise SpecError("refine: 'chunk_size' must be >= 0 (0 = the generation batch size).")
    check_data(Workspace.default(), cfg, missing_ok=True)


def _check_backend(name: str) -> None:
    from dgr_core.backends.base import available_backends

    if name not in available_backends():
        raise SpecError(f"refine: unknown backend {name!r}; choose one of {available_backends()}.")


def _check_generation(g: GenerationConfig) -> None:
    if g.max_new_tokens < 1 or g.batch_size < 1:
        raise SpecError("refine: generation needs max_new_tokens >= 1 and batch_size >= 1.")
    if g.temperature < 0 or not 0 < g.top_p <= 1:
        raise SpecError("refine: generation needs temperature >= 0 (0 = greedy) and 0 < top_p <= 1.")


def _check_filters(f: FilterConfig) -> None:
    if f.min_length_ratio < 0 or f.max_length_ratio < 0:
        raise SpecError("refine: length ratios must be >= 0 (0 = no bound).")
    if f.max_length_ratio and f.min_length_ratio > f.max_length_ratio:
        raise SpecError(f"refine: min_length_ratio ({f.min_length_ratio:g}) is above max_length_ratio "
                        f"({f.max_length_ratio:g}).")
    if not 0 < f.max_repeat_share <= 1:
        raise SpecError("refine: max_repeat_share must be in (0, 1].")
    if not isinstance(f.judge, str) or not f.judge.strip():
        raise SpecError("refine: judge must be 'keywords' or a Hugging Face id / folder of a safety judge model.")


def _check_output(cfg: RefineConfig) -> None:
    try:
        name = safe_name(cfg.effective_output, what="output dataset name")
    except DataError as exc:
        raise SpecError(f"refine: {exc}") from None
    if name == cfg.dataset:
        raise SpecError(f"refine: the output name {name!r} is the input dataset; choose another name so the "
                        "original is kept.")


def check_data(ws: Workspace, cfg: RefineConfig, *, missing_ok: bool = False) -> pd.DataFrame | None:
    """Load the rows to refine and check them against the mode (engine.check_dataset); None if the dataset is
    absent and `missing_ok` (validation in a process whose default workspace is not the job's)."""
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    if not store.exists(cfg.dataset):
        if missing_ok:
            return None
        raise SpecError(f"refine: no dataset named {cfg.dataset!r} in {ws.datasets}.")
    df = engine.select_rows(store.load(cfg.dataset), cfg.limit)
    engine.check_dataset(df, cfg.mode, cfg.dataset)
    return df


# ---- the run ----------------------------------------------------------------------------------------------

def run(cfg: RefineConfig, ctx) -> dict[str, Any]:
    started = time.perf_counter()
    df = check_data(ctx.ws, cfg)
    assert df is not None  # missing_ok is off: an absent dataset raised
    path = ctx.path(engine.GENERATIONS_FILE)
    todo = engine.pending_rows(df, engine.read_generations(path))
    meter = engine.Meter(len(df), len(df) - len(todo), time.perf_counter)
    ctx.progress(meter.event("loading model"))
    from dgr_core.backends import get_backend

    backend = get_backend(cfg.backend, cfg.model, ctx.ws)
    template = engine.resolve_template(cfg.mode, cfg.effective_template, backend.tokenizer)  # delimited if it thinks
    meter.begin()
    _generate(cfg, ctx, backend, todo, meter, template)
    meter.stop()
    outcomes = _outcomes(cfg, ctx, df, engine.read_generations(path))
    fallbacks = engine.fallback_frame(df, outcomes)
    engine.write_fallbacks(ctx.path(engine.FALLBACKS_FILE), fallbacks)
    model_name = str(backend.identity().get("name", cfg.model.ref))
    refined = engine.build_refined(df, outcomes, model_name=model_name,
                                   template_hash=template_hash(template),
                                   generation=cfg.generation.to_dict(), mode=cfg.mode)
    info = _save(cfg, ctx, refined, fallbacks, len(df))
    scores = _score_both(cfg, ctx, backend, refined) if cfg.score_after else {}
    ctx.progress({**meter.event("done"), "done": len(df)})
    return {"output_dataset": info.name, "parent": cfg.dataset, "mode": cfg.mode, "n": len(df),
            "n_output": len(refined), "n_fell_back": len(fallbacks), "fallback_rate": len(fallbacks) / len(df),
            "fallback_reasons": engine.fallback_counts(fallbacks["reason"].tolist()),
            "on_failure": "dropped" if cfg.mode == "self" else "original",
            "score_op_key": scores.get("op_key"), "scores": scores.get("mean", {}),
            "n_generated": meter.new, "seconds": round(time.perf_counter() - started, 2),
            "generation_seconds": round(meter.seconds, 2), "samples_per_s": meter.samples_per_s(),
            "tokens_per_s": meter.event()["tokens_per_s"], "template_hash": template_hash(template),
            "model": model_name}


def _generate(cfg: RefineConfig, ctx, backend, todo: list[dict[str, Any]], meter: engine.Meter,
              template: str) -> None:
    """Chunk by chunk: generate, append to generations.jsonl, report; stop cleanly between chunks on cancel."""
    path, step = ctx.path(engine.GENERATIONS_FILE), cfg.effective_chunk
    for start in range(0, len(todo), step):
        if ctx.should_stop():
            raise JobCancelled(f"Cancelled after {meter.done} of {meter.total} samples; finished samples are kept "
                               f"in {engine.GENERATIONS_FILE}: resume the run to continue.")
        records = engine.generate_chunk(backend, todo[start : start + step], cfg.mode, template, cfg.generation)
        engine.append_generations(path, records)
        meter.add(records)
        ctx.progress(meter.event("generating"))


def _outcomes(cfg: RefineConfig, ctx, df: pd.DataFrame, records: dict[str, Any]) -> list[engine.Outcome]:
    """Parse and filter every record; then the judge model, if one is set (not in self mode: the model's own
    answer has no original decision to keep)."""
    outcomes = engine.evaluate_records(df, records, cfg.mode, cfg.filters)
    if cfg.filters.uses_judge_model and cfg.mode != "self":
        ctx.progress({"done": len(df), "total": len(df), "unit": "samples",
                      "message": f"judging rewrites with {cfg.filters.judge}"})
        judge = load_judge(cfg, ctx.ws)
        outcomes = engine.apply_judge(df, outcomes, judge)
        del judge  # free its memory before scoring
    return outcomes


def load_judge(cfg: RefineConfig, ws: Workspace):
    """The guard model as a refusal judge (dgr_core.evaluate.judge) on the hf backend (a second vLLM engine in one
    process is not an option), or the fake one in tests. Same device and dtype as the target model."""
    from dgr_core.backends.base import uses_weight_files
    from dgr_core.evaluate.judge import HFJudge

    name = "hf" if uses_weight_files(cfg.backend) else cfg.backend  # a scripted backend judges with its script
    spec = ModelSpec(cfg.filters.judge, device=cfg.model.device, dtype=cfg.model.dtype)
    return HFJudge.load(spec, name, ws, batch_size=cfg.generation.batch_size)


def _save(cfg: RefineConfig, ctx, refined: pd.DataFrame, fallbacks: pd.DataFrame, n: int):
    from dgr_core.data.store import DatasetStore

    if refined.empty:
        counts = engine.fallback_counts(fallbacks["reason"].tolist())
        raise DataError(f"refine: every one of the {n} samples failed the filters ({counts}), so there is nothing "
                        "to save; see fallbacks.jsonl in the run folder. For a model that does not reason in "
                        "<think> tags, turn off 'Require a <think> block' (--no-expect-think); for cut answers "
                        "raise max_new_tokens.")
    rate = len(fallbacks) / n
    verb = "were dropped" if cfg.mode == "self" else "fell back to the original"
    desc = (f"{cfg.dataset} {'answered' if cfg.mode == 'self' else 'refined'} by {cfg.model.ref} ({cfg.mode} "
            f"mode): {len(refined)} samples; {len(fallbacks)} of {n} ({rate:.0%}) {verb}.")
    extra = {"refine_run": ctx.run_dir.name, "refine": cfg.to_dict(), "fallback_rate": rate,
             "fallback_reasons": engine.fallback_counts(fallbacks["reason"].tolist())}
    return DatasetStore(ctx.ws).save(cfg.effective_output, refined, origin=f"refine:{ctx.run_dir.name}",
                                     parent=cfg.dataset, description=desc, extra=extra)


def _score_both(cfg: RefineConfig, ctx, backend, refined: pd.DataFrame) -> dict[str, Any]:
    """Score the refined set and the whole parent dataset (what the Compare page loads) with the already loaded
    backend, in the settings the Compare page uses by default. The reported means are over the refined rows and
    their parents, so the two numbers compare the same samples."""
    from dgr_core.data.store import DatasetStore
    from dgr_core.scoring.api import ScoreConfig, score_frame

    scfg = ScoreConfig(model=cfg.model, backend=cfg.backend)
    parent = DatasetStore(ctx.ws).load(cfg.dataset)
    means, key = {}, None
    for which, frame in (("refined", refined), ("original", parent)):
        def progress(ev: dict[str, Any], which: str = which) -> None:
            ctx.progress({**ev, "message": f"scoring {which}" + (f" · {ev['message']}" if ev.get("message") else "")})

        result = score_frame(ctx.ws, frame, scfg, backend=backend, progress=progress, should_stop=ctx.should_stop)
        key = result.store.key
        table = result.table
        if which == "original":
            table = table[table["id"].isin(set(refined["parent_id"].astype(str)))]
        means[which] = {c: _finite(table[c].mean()) for c in ("nll_reasoning", "nll_answer", "nll_total")}
    return {"op_key": key, "mean": means}


def _finite(x: float) -> float | None:
    # result.json is strict JSON: a mean over no tokens (NaN) is written as null.
    return float(x) if math.isfinite(x) else None


def describe(cfg: RefineConfig) -> str:
    return f"refine {cfg.dataset} with {cfg.model.ref} ({cfg.mode})"


_KIND = register_kind(JobKind(KIND, RefineConfig, RefineResult, run, check=check, uses_model=True,
                             describe=describe))
validate = _KIND.validate
