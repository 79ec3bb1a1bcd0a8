"""The `train` job kind: supervised fine-tuning (LoRA or full) of a base model on a subset of one dataset.

    from dgr_core.jobs import manager
    from dgr_core.train.config import SubsetConfig, TrainConfig, TrainJobConfig
    cfg = TrainJobConfig("demo-external-refusal", subset=SubsetConfig("random", n=10), train=TrainConfig(epochs=3))
    run = manager.submit(ws, "train", cfg.to_dict(), name="sft-10")
    # when done: ModelSpec(f"run:{run.name}") is the trained model (Evaluate page, `dgr evaluate --model run:...`)

The run folder gets `train_rows.jsonl` (the exact rows trained on, fixed at the first start), `loss.jsonl` (one
line per optimizer step), `checkpoint/` after each epoch (see dgr_core.train.sft), and at the end `adapter/`
(LoRA: peft adapter + tokenizer) or `model/` (full: a complete Hugging Face folder), then `result.json`.
Resume (`dgr jobs resume RUN`, or the Resume button) continues after the last finished epoch.

Several GPUs: the same run folder runs data-parallel under accelerate. Create the run without starting it, then
launch the worker with accelerate (DDP by default; FSDP or DeepSpeed through accelerate's own config file, which
`accelerate config` writes):

    RUN=$(dgr train --dataset STAR-1 --model Qwen/Qwen3-8B --method full --lr 1e-5 --n 1000 --create-only)
    accelerate launch --multi_gpu --num_processes 8 -m dgr_core.jobs run "$RUN"            # DDP
    accelerate launch --config_file fsdp.yaml -m dgr_core.jobs run "$RUN"                   # FSDP / DeepSpeed

Every process runs the job (the loop is accelerate's: `prepare`, `accumulate`, `backward`, `get_state_dict`);
only the main one writes loss, progress, checkpoints and the saved model. `batch_size` is per process, so the
effective batch is batch_size x grad_accum x processes. Under accelerate (WORLD_SIZE > 1) this kind does not take
the workspace's one-model-job lock: the lock is per process, and the processes of one launch would wait on each
other forever. Epoch checkpoints (and so Resume) work on one process and under DDP; FSDP / DeepSpeed shard the
optimizer state, so there a resumed run trains again from the start. Config notes: FSDP with LoRA needs
`fsdp_use_orig_params: true`, and `fsdp_state_dict_type: FULL_STATE_DICT` saves one complete model; DeepSpeed
wants `gradient_accumulation_steps: auto` and `train_micro_batch_size_per_gpu: auto` (filled from this run's
config), and ZeRO-3 `zero3_save_16bit_model: true` so the final weights can be gathered.

Verified here: DDP with 2 CPU processes (`accelerate launch --multi_gpu --num_processes 2 -m dgr_core.jobs run
RUN` on a machine without GPUs: gloo, 2 processes, the step count and LR schedule of a 2-process run). FSDP and
DeepSpeed follow accelerate's documented loop but were not run (no GPU machine, DeepSpeed not installed).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.errors import SpecError
from dgr_core.jobs.kinds import JobKind, register_kind
from dgr_core.jobs.results import TrainResult
from dgr_core.models.loading import ModelSpec, clear_model_cache, load_uncached, pick_device_dtype
from dgr_core.train import sft
from dgr_core.train.config import TrainJobConfig
from dgr_core.train.data import build_subset, encode_frame
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

KIND = "train"
ROWS_FILE, SETUP_FILE = "train_rows.jsonl", "setup.json"
ROW_COLUMNS = ["id", "prompt", "reasoning", "answer", "source", "category", "think_status"]
log = logging.getLogger(__name__)


def check(cfg: TrainJobConfig) -> None:
    """After the typed config's own checks: the backend exists (loads no model and reads no dataset)."""
    from dgr_core.backends.base import available_backends

    if cfg.backend not in available_backends():
        raise SpecError(f"train: unknown backend {cfg.backend!r}; choose one of {available_backends()}.")


# ---------------------------------------------------------------- the run


def run(cfg: TrainJobConfig, ctx) -> dict[str, Any]:
    started = time.perf_counter()
    from dgr_core.data.store import DatasetStore

    info = DatasetStore(ctx.ws).info(cfg.dataset)  # fails fast, naming the dataset, before a model loads
    device, _ = pick_device_dtype(cfg.model.device, cfg.model.dtype)
    accelerator = sft.make_accelerator(cfg.train, device)
    with accelerator.main_process_first():  # the main process picks (and maybe scores) the rows; others read them
        rows = training_rows(cfg, ctx)
    report = ctx.progress if accelerator.is_main_process else (lambda event: None)  # one writer
    report({"done": 0, "total": None, "unit": "steps", "message": "loading model"})
    model, tokenizer, base_identity = _load_for_training(cfg, ctx, accelerator)
    examples = encode_frame(rows, tokenizer, cfg.train.max_length)
    outcome = sft.train(model, tokenizer, examples, cfg.train, ctx.run_dir,
                        hooks=sft.Hooks(report, ctx.should_stop), accelerator=accelerator)
    report({"done": outcome.steps, "total": outcome.steps, "unit": "steps", "message": "saving"})
    final = sft.save_final(outcome, model, tokenizer, cfg.train, ctx.run_dir)
    report({"done": outcome.steps, "total": outcome.steps, "unit": "steps", "loss": outcome.final_loss,
            "message": "done"})
    return _result(cfg, ctx, info.fingerprint, rows, examples, outcome, final, base_identity,
                   time.perf_counter() - started)


def training_rows(cfg: TrainJobConfig, ctx) -> pd.DataFrame:
    """The rows to train on: chosen at the first start and saved, so a resumed run trains on the same rows."""
    path = ctx.path(ROWS_FILE)
    if path.is_file():
        return read_rows(path)
    scorer = _nll_scorer(cfg, ctx) if cfg.subset.strategy in ("lowest_nll", "highest_nll") else None
    rows = build_subset(ctx.ws, cfg.dataset, cfg.subset, nll_scorer=scorer)
    clear_model_cache()  # the scorer's model copy is not the one we train: free it
    cols = [c for c in ROW_COLUMNS if c in rows.columns]
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows[cols].to_dict("records"))
    atomic_write_bytes(path, text.encode("utf-8"))
    return rows[cols]


def read_rows(path: Path) -> pd.DataFrame:
    """train_rows.jsonl as a frame; read line by line so ids like "007" stay text."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return pd.DataFrame([json.loads(line) for line in lines if line.strip()])


def _nll_scorer(cfg: TrainJobConfig, ctx):
    """Per-sample NLL of rows under the base model: the scoring cache (shared with the Shift page) first."""
    from dgr_core.scoring.api import ScoreConfig, score_frame

    def score(df: pd.DataFrame) -> pd.DataFrame:
        ctx.progress({"done": 0, "total": len(df), "unit": "samples", "message": "scoring NLL under the base model"})
        return score_frame(ctx.ws, df, ScoreConfig(model=cfg.model, backend=cfg.backend),
                           progress=ctx.progress, should_stop=ctx.should_stop).table
    return score


def training_spec(spec: ModelSpec, method: str, processes: int = 1) -> ModelSpec:
    """How to load the base for training. dtype "auto": fp32 master weights for full fine-tuning (bf16 autocast
    on a GPU); for LoRA the frozen base may be bf16 on a GPU (peft keeps the adapter in fp32). Several processes
    load on the CPU first and accelerate moves each copy to its own GPU, so "auto" is resolved for the GPU here."""
    import torch

    dtype = spec.dtype
    if dtype == "auto" and method == "full":
        dtype = "float32"
    elif dtype == "auto" and processes > 1:
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    device = "cpu" if processes > 1 else spec.device
    return ModelSpec(spec.ref, spec.revision, device, dtype, spec.trust_remote_code)


def _load_for_training(cfg: TrainJobConfig, ctx, accelerator) -> tuple[Any, Any, dict[str, Any]]:
    """Base model (fresh copy) wrapped for training; from the last checkpoint when resuming."""
    spec = training_spec(cfg.model, cfg.train.method, accelerator.num_processes)
    ckpt = sft.checkpoint_weights(ctx.run_dir) if sft.checkpoints_supported(accelerator) else None
    setup_path = ctx.path(SETUP_FILE)
    if ckpt is not None and cfg.train.method == "full" and setup_path.is_file():
        # The checkpoint is a complete model folder: load it instead of the base.
        loaded = load_uncached(ModelSpec(str(ckpt), None, spec.device, spec.dtype, spec.trust_remote_code), ctx.ws)
        return sft.prepare_model(loaded.model, cfg.train), loaded.tokenizer, read_json(setup_path)["base_identity"]
    loaded = load_uncached(spec, ctx.ws)
    if accelerator.is_main_process:
        atomic_write_json(setup_path, {"base_identity": loaded.identity, "base_path": loaded.path})
    adapter = ckpt if cfg.train.method == "lora" else None
    return sft.prepare_model(loaded.model, cfg.train, adapter), loaded.tokenizer, loaded.identity


def _result(cfg: TrainJobConfig, ctx, fingerprint: str, rows: pd.DataFrame, examples, outcome: sft.Outcome,
            final: Path, base_identity: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "base_model": cfg.model.to_dict(), "base_identity": base_identity,
        "model_ref": f"run:{ctx.run_dir.name}", "output": str(final), "method": cfg.train.method,
        "dataset": cfg.dataset, "dataset_fingerprint": fingerprint, "subset": cfg.subset.to_dict(),
        "sample_ids": [str(i) for i in rows["id"]], "n_samples": len(examples),
        "n_truncated": sum(e.truncated for e in examples), "steps": outcome.steps,
        "first_loss": outcome.first_loss, "final_loss": outcome.final_loss, "epoch_losses": outcome.epoch_losses,
        "learning_rate": cfg.train.lr(), "seconds": round(seconds, 2), "train_seconds": round(outcome.seconds, 2),
        "resumed_from_epoch": outcome.resumed_from_epoch, "n_trainable": outcome.n_trainable,
        "n_params": outcome.n_params, "processes": outcome.accelerator.num_processes,
        "precision": str(outcome.accelerator.mixed_precision), "device": str(outcome.accelerator.device),
        "train": cfg.train.to_dict(),
    }


# ---------------------------------------------------------------- reading runs (pages, CLI)


def loss_frame(run_dir: Path) -> pd.DataFrame:
    """The loss curve of a run (step, epoch, loss, lr), possibly while it is still training."""
    rows = sft.read_loss(Path(run_dir) / sft.LOSS_FILE)
    return pd.DataFrame(rows, columns=["step", "epoch", "loss", "lr"])


def trained_models(ws: Workspace) -> list[dict[str, Any]]:
    """Finished train runs, newest first: {"run", "model_ref", "method", "dataset", "n_samples", "final_loss"}.
    A run whose result.json cannot be read back (ResultError) is left out, with a warning in the log."""
    from dgr_core.jobs import manager
    from dgr_core.jobs.results import ResultError

    out = []
    for r in manager.list_runs(ws, KIND):
        try:
            res = r.result_as(TrainResult) if r.state == "done" else None
        except ResultError as exc:
            log.warning("skipping train run %s: %s", r.id, exc)
            continue
        if res is not None and res.model_ref:
            out.append({"run": r.id, "model_ref": res.model_ref, "method": res.method, "dataset": res.dataset,
                        "n_samples": res.n_samples, "final_loss": res.final_loss})
    return out


def _describe(cfg: TrainJobConfig) -> str:
    return (f"{cfg.train.method} SFT of {cfg.model.ref} on {cfg.subset.n or 'all'} {cfg.subset.strategy} rows of "
            f"{cfg.dataset} (seed {cfg.train.seed})")


# Under `accelerate launch` every process runs this job: the per-process device lock would deadlock them.
_DISTRIBUTED = int(os.environ.get("WORLD_SIZE", "1")) > 1
_KIND = register_kind(JobKind(KIND, TrainJobConfig, TrainResult, run, check=check, uses_model=not _DISTRIBUTED,
                             describe=_describe))
validate = _KIND.validate
