"""Supervised fine-tuning: a plain PyTorch loop (AdamW, linear warm-up and decay, gradient accumulation,
gradient clipping) driven through `accelerate`, with LoRA (peft) or full fine-tuning.

    model = prepare_model(loaded.model, cfg)                 # LoRA adapter, or every weight trainable
    outcome = train(model, tokenizer, examples, cfg, run_dir, hooks=Hooks(progress=..., should_stop=...))
    save_final(outcome, model, tokenizer, cfg, run_dir)          # run_dir/adapter (LoRA) or run_dir/model (full)

Why accelerate: on one CPU process its `prepare` is a no-op, and the very same loop runs data-parallel (DDP),
FSDP or DeepSpeed when the job is started by `accelerate launch` (see dgr_core.train.job). Precision: weights in
fp32 on CPU; on a GPU, bf16 autocast (`mixed_precision="bf16"`) over fp32 trainable weights (LoRA adapters are
kept in fp32 by peft even over a bf16 base), unless `accelerate launch` sets the precision itself.

Checkpoints: after every epoch `checkpoint/` holds the trainable weights (adapter or full model), the optimizer and
scheduler state (`trainer_state.pt`, torch.save of tensors and numbers only, read back with weights_only=True)
and `checkpoint.json` (epochs and steps done, written last). The folder is built beside and swapped in with a
rename, so a crash leaves either the previous or the new checkpoint, never half of one. A resumed run loads it and
continues with the next epoch; each epoch reseeds the data order and dropout from (seed, epoch), so a resumed run
ends with the same weights as one that was never interrupted (tests/test_train_sft.py checks this). Under FSDP or
DeepSpeed the optimizer state is sharded over the processes: no epoch checkpoints are written there, and a resumed
run trains again from the start.

`loss.jsonl` gets one line per optimizer step ({"step", "epoch", "loss", "lr"}), written as the step ends: the
Train page draws its live loss curve from it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dgr_core.errors import JobCancelled
from dgr_core.train.config import TrainConfig
from dgr_core.train.data import Example, collate
from dgr_core.workspace import append_jsonl, atomic_write_bytes, atomic_write_json, read_json, read_jsonl

CHECKPOINT_DIR, WEIGHTS_DIR, STATE_FILE, CKPT_FILE = "checkpoint", "weights", "trainer_state.pt", "checkpoint.json"
LOSS_FILE = "loss.jsonl"
log = logging.getLogger(__name__)
ADAPTER_DIR, MODEL_DIR = "adapter", "model"


@dataclass
class Hooks:
    """How the loop reports and when it stops (a job passes its context's methods)."""

    progress: Callable[[dict[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass
class Outcome:
    steps: int  # optimizer steps in the whole run (all epochs)
    first_loss: float
    final_loss: float  # loss of the last optimizer step
    epoch_losses: list[float]  # mean step loss of each epoch
    seconds: float  # wall time of the training loop in this process (not counting an earlier, resumed part)
    resumed_from_epoch: int  # epochs already done when this process started (0 = fresh)
    n_trainable: int
    n_params: int
    accelerator: Any = field(default=None, repr=False)


# ---------------------------------------------------------------- model


def prepare_model(model: Any, cfg: TrainConfig, adapter_dir: Path | None = None) -> Any:
    """LoRA: wrap in a peft adapter (fresh, or the one saved in `adapter_dir` to resume); full: unfreeze all."""
    import torch

    model.train()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings must pass gradients to checkpointed blocks
    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    torch.manual_seed(cfg.seed)  # LoRA A matrices are initialized randomly
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def trainable_parameters(model: Any) -> dict[str, Any]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: decaying biases and norm gains just pulls them to 0 for no benefit."""
    decay: list[Any] = []
    plain: list[Any] = []
    for p in trainable_parameters(model).values():
        (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up then linear decay. The first step already has a non-zero LR (unlike transformers'
    schedule, which spends it at LR 0): with 15 steps in all, every step counts."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


# ---------------------------------------------------------------- data order


class EpochSampler:
    """A permutation of the rows seeded by (seed, epoch): any epoch's order is known without replaying earlier
    ones, which is what makes resuming from a checkpoint exact."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        import torch

        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


# ---------------------------------------------------------------- the loop


def make_accelerator(cfg: TrainConfig, device: str) -> Any:
    """An Accelerator for this run. Under `accelerate launch` its config decides precision and distribution."""
    import torch
    from accelerate import Accelerator

    precision = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if precision is None:
        on_gpu = device != "cpu" and torch.cuda.is_available()
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=precision,
                       cpu=device == "cpu")


def checkpoints_supported(accelerator: Any) -> bool:
    """Epoch checkpoints (and so resuming) work on one process and under DDP, not where FSDP / DeepSpeed shard
    the optimizer state over the processes: there a resumed run trains again from the start."""
    return _distributed_type(accelerator) not in ("FSDP", "DEEPSPEED")


def _distributed_type(accelerator: Any) -> str:
    """"NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED", ... (accelerate's DistributedType name)."""
    kind = accelerator.distributed_type
    return str(getattr(kind, "name", kind)).upper()


class _Loop:
    """State of one training run; `run()` goes over the remaining epochs."""

    def __init__(self, model: Any, tokenizer: Any, examples: list[Example], cfg: TrainConfig, out: Path,
                 hooks: Hooks, accelerator: Any):
        import torch
        from torch.utils.data import DataLoader

        self.cfg, self.out, self.hooks, self.acc = cfg, Path(out), hooks, accelerator
        self.tokenizer = tokenizer
        self.sampler = EpochSampler(len(examples), cfg.seed)
        loader: DataLoader[Any] = DataLoader(
            examples, batch_size=cfg.batch_size, sampler=self.sampler,  # type: ignore[arg-type]  # a list is a map-style dataset
            collate_fn=partial(collate, pad_id=int(tokenizer.pad_token_id)))
        # The schedule is fixed before `prepare` (DeepSpeed wants model, optimizer, loader and scheduler in one
        # call): accelerate gives each process ceil(batches / processes) batches (even_batches, the default).
        n = accelerator.num_processes
        batches = math.ceil(math.ceil(len(examples) / cfg.batch_size) / n)
        self.steps_per_epoch = math.ceil(batches / cfg.grad_accum)
        self.total = self.steps_per_epoch * cfg.epochs
        warmup = int(cfg.warmup_ratio * self.total)
        # A prepared scheduler steps once per process per optimizer step (DeepSpeed's engine: once): count alike.
        ticks = 1 if _distributed_type(accelerator) == "DEEPSPEED" else n
        optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup * ticks, self.total * ticks))
        self.model, self.optimizer, self.loader, self.scheduler = accelerator.prepare(
            model, optimizer, loader, scheduler)
        if len(self.loader) != batches or accelerator.gradient_accumulation_steps != cfg.grad_accum:
            log.warning("accelerate changed the batching (%d batches per process, expected %d; accumulation %d, "
                        "expected %d): the LR schedule assumes the expected values", len(self.loader), batches,
                        accelerator.gradient_accumulation_steps, cfg.grad_accum)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step, self.epochs_done = 0, 0
        self.history: list[dict[str, Any]] = []  # one dict per optimizer step
        # FSDP / DeepSpeed shard the optimizer state over the processes: no epoch checkpoints there (see above).
        self.checkpoints = checkpoints_supported(accelerator)

    # -- checkpoints

    def restore(self) -> None:
        """Load optimizer, scheduler and counters from checkpoint/ (the weights were loaded with the model)."""
        import torch

        ckpt = self.out / CHECKPOINT_DIR
        _recover(ckpt)
        main = self.acc.is_main_process  # one writer for loss.jsonl
        if not self.checkpoints or not (ckpt / CKPT_FILE).is_file():
            _truncate_loss(self.out, 0, write=main)
            return
        meta = read_json(ckpt / CKPT_FILE)
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epochs_done = int(meta["step"]), int(meta["epoch"])
        self.history = _truncate_loss(self.out, self.step, write=main)  # drop steps of the unfinished epoch

    def save_checkpoint(self) -> None:
        """Build checkpoint.tmp/ and swap it in for checkpoint/ (main process only)."""
        self.acc.wait_for_everyone()
        if not self.checkpoints or not self.acc.is_main_process:
            return
        tmp = self.out / f"{CHECKPOINT_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_weights(self.acc, self.model, self.tokenizer, self.cfg, tmp / WEIGHTS_DIR)
        self.acc.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                      tmp / STATE_FILE)
        atomic_write_json(tmp / CKPT_FILE, {"epoch": self.epochs_done, "step": self.step, "total_steps": self.total,
                                            "train": self.cfg.to_dict()})
        _swap_dir(tmp, self.out / CHECKPOINT_DIR)

    # -- training

    def run(self) -> float:
        start = time.perf_counter()
        self.start_step, self.tokens = self.step, 0  # throughput and ETA count this process's steps only
        for epoch in range(self.epochs_done, self.cfg.epochs):
            self._epoch(epoch, start)
            self.epochs_done = epoch + 1
            self.save_checkpoint()
        return time.perf_counter() - start

    def _epoch(self, epoch: int, start: float) -> None:
        import torch

        self.sampler.set_epoch(epoch)
        self.loader.set_epoch(epoch)
        torch.manual_seed(self.cfg.seed * 100_003 + epoch)  # dropout: same per epoch, resumed or not
        self.model.train()
        losses = []
        for batch in self.loader:
            self._check_stop()
            with self.acc.accumulate(self.model):
                loss = self.model(**batch).loss
                self.acc.backward(loss)
                if self.acc.sync_gradients:
                    self.acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
                lr = self.optimizer.param_groups[0]["lr"]  # the LR of this step (the scheduler moves on below)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(float(self.acc.reduce(loss.detach(), reduction="mean")))
            self.tokens += int(batch["attention_mask"].sum())
            if self.acc.sync_gradients:
                self._log_step(epoch, sum(losses) / len(losses), lr, start)
                losses = []

    def _check_stop(self) -> None:
        if self.hooks.should_stop and self.hooks.should_stop():
            raise JobCancelled(f"Cancelled at step {self.step} of {self.total}; {self.epochs_done} epoch(s) are "
                               f"saved and a resume continues with epoch {self.epochs_done + 1}.")

    def _log_step(self, epoch: int, loss: float, lr: float, start: float) -> None:
        self.step += 1
        elapsed = time.perf_counter() - start
        rate = (self.step - self.start_step) / max(elapsed, 1e-9)  # steps/s of this process (resumed: its part)
        row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "loss": round(loss, 6),
               "lr": lr}
        self.history.append(row)
        if not self.acc.is_main_process:
            return
        append_jsonl(self.out / LOSS_FILE, row, fsync=False)  # repairs a line torn by a kill
        if self.hooks.progress:
            eta = (self.total - self.step) / rate if rate > 0 else None
            self.hooks.progress({"done": self.step, "total": self.total, "unit": "steps", "loss": row["loss"],
                                 "epoch": row["epoch"], "eta_s": round(eta, 1) if eta is not None else None,
                                 "tokens_per_s": round(self.tokens / max(elapsed, 1e-9), 1),
                                 "message": f"epoch {epoch + 1} of {self.cfg.epochs}"})


def train(model: Any, tokenizer: Any, examples: list[Example], cfg: TrainConfig, out: Path, *,
          hooks: Hooks | None = None, accelerator: Any = None) -> Outcome:
    """Train `model` (already through `prepare_model`) on `examples`, resuming from `out/checkpoint` if there."""
    accelerator = accelerator or make_accelerator(cfg, str(next(model.parameters()).device.type))
    Path(out).mkdir(parents=True, exist_ok=True)
    loop = _Loop(model, tokenizer, examples, cfg, Path(out), hooks or Hooks(), accelerator)
    loop.restore()
    resumed = loop.epochs_done
    seconds = loop.run()
    losses = [h["loss"] for h in loop.history]
    per_epoch = [[h["loss"] for h in loop.history if math.ceil(h["step"] / loop.steps_per_epoch) == e + 1]
                 for e in range(cfg.epochs)]
    return Outcome(steps=loop.step, first_loss=losses[0], final_loss=losses[-1],
                   epoch_losses=[sum(v) / len(v) for v in per_epoch if v], seconds=seconds,
                   resumed_from_epoch=resumed, n_trainable=sum(p.numel() for p in loop.params),
                   n_params=sum(p.numel() for p in loop.model.parameters()), accelerator=accelerator)


# ---------------------------------------------------------------- saving


def save_weights(accelerator: Any, model: Any, tokenizer: Any, cfg: TrainConfig, folder: Path) -> None:
    """The adapter (LoRA, a few MB) or the full model, plus the tokenizer, as a Hugging Face folder."""
    unwrapped = accelerator.unwrap_model(model)
    # get_state_dict gathers the full weights under FSDP / DeepSpeed ZeRO-3 (on one process: the state dict);
    # peft's save_pretrained keeps only the adapter's entries of it.
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped.save_pretrained(folder, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(folder)


def save_final(outcome: Outcome, model: Any, tokenizer: Any, cfg: TrainConfig, out: Path) -> Path:
    """Save the trained weights to out/adapter (LoRA) or out/model (full) and drop the checkpoint."""
    acc = outcome.accelerator
    final = Path(out) / (ADAPTER_DIR if cfg.method == "lora" else MODEL_DIR)
    acc.wait_for_everyone()
    tmp = final.with_name(final.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    save_weights(acc, model, tokenizer, cfg, tmp)
    if acc.is_main_process:
        _swap_dir(tmp, final)
        shutil.rmtree(Path(out) / CHECKPOINT_DIR, ignore_errors=True)  # optimizer state: large, not needed now
    acc.wait_for_everyone()
    return final


def checkpoint_weights(out: Path) -> Path | None:
    """Weights folder of the last finished epoch, if the run has one (for resuming)."""
    folder = Path(out) / CHECKPOINT_DIR
    _recover(folder)
    return folder / WEIGHTS_DIR if (folder / CKPT_FILE).is_file() else None


def _recover(final: Path) -> None:
    """Finish a swap a crash interrupted between its two renames (`final` gone, `final.old` complete)."""
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.is_dir():
        os.replace(old, final)


def _swap_dir(new: Path, final: Path) -> None:
    """Replace folder `final` by `new` with renames only (a crash leaves one complete folder in place)."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _truncate_loss(out: Path, step: int, write: bool = True) -> list[dict[str, Any]]:
    """Keep the loss rows of steps <= `step` (those of a checkpointed epoch) and return them."""
    path = Path(out) / LOSS_FILE
    rows = read_loss(path)
    kept = [r for r in rows if r.get("step", 0) <= step]
    if write and len(kept) != len(rows):
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))
    return kept


def read_loss(path: Path) -> list[dict[str, Any]]:
    """Rows of a loss.jsonl (a line being written right now is skipped)."""
    return [r for r in read_jsonl(Path(path)) if isinstance(r, dict)]
