"""Configs of the SFT job: how to train (`TrainConfig`), which rows to train on (`SubsetConfig`), and the whole
job (`TrainJobConfig`). Each is a dataclass with one help comment per field that round-trips to JSON and is
saved in the run folder (`job.json`, and again in `result.json`).

Defaults are tuned for the question this app asks first: do a handful of refusal samples (10, as in the DGR
paper) "activate" refusals in a small instruct model within 3 epochs? See `TrainConfig` for why each default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dgr_core.config import Config, ConfigError
from dgr_core.models.loading import ModelSpec

METHODS = ("lora", "full")
STRATEGIES = ("all", "random", "lowest_nll", "highest_nll", "category", "selection")
NLL_FIELDS = ("nll_total", "nll_reasoning", "nll_answer")
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class TrainConfig(Config):
    """How to fine-tune.

    Learning rate: the literature's ranges (full fine-tuning 5e-6..5e-5, LoRA 1e-5..2e-4 on 7B+ models) assume
    hundreds or thousands of steps. The 10-sample activation run is 15 optimizer steps (10 samples / batch 2 x 3
    epochs), so the defaults sit at the high end for a 135M model: LoRA 1e-3, full 5e-5 (`default_learning_rate`).
    Measured on the demo model (benchmarks/results_train.md): LoRA 1e-4 leaves held-out StrongREJECT refusals at
    0/10, 3e-4 gives 5/10, 1e-3 gives 9/10 (with the safety tax: over-refusal and lost arithmetic). For a large
    model or more than a few hundred steps, lower them (LoRA 1e-4, full 1e-5).
    LoRA r=16, alpha=32 on the attention projections follow common practice (alpha = 2r).
    """

    method: str = "lora"  # "lora" (adapter on frozen weights, small and fast) or "full" (every weight)
    learning_rate: float = 0.0  # peak LR of AdamW; 0 = the method's default (LoRA 1e-3, full 5e-5), see above
    epochs: int = 3  # passes over the training rows; a checkpoint is saved after each one
    batch_size: int = 2  # rows per forward pass (per device)
    grad_accum: int = 1  # forward passes per optimizer step (effective batch = batch_size x grad_accum x devices)
    max_length: int = 1024  # tokens per row (prompt + response); longer rows are cut from the right
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scale numerator (the update is scaled by alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA input
    lora_targets: list[str] | str = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))  # module names, or "all-linear"
    seed: int = 0  # seeds data order, LoRA init and dropout (each epoch reseeds, so a resumed run matches)
    warmup_ratio: float = 0.1  # fraction of the steps with a linear LR warm-up from 0
    weight_decay: float = 0.0  # AdamW weight decay (not applied to biases and norms)
    max_grad_norm: float = 1.0  # gradients are clipped to this global norm
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower

    def lr(self) -> float:
        """The learning rate actually used."""
        return self.learning_rate or default_learning_rate(self.method)

    def validate(self) -> None:
        """SpecError naming the first bad field."""
        _require(self.method in METHODS, "method", f"must be one of {METHODS}, not {self.method!r}")
        _require(self.learning_rate >= 0, "learning_rate", "must be >= 0 (0 = the method's default)")
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "lora_alpha"):
            _require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "must be an integer >= 1")
        _require(self.max_length >= 16, "max_length", "must be >= 16 tokens")
        _require(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        _require(self.weight_decay >= 0 and self.max_grad_norm > 0, "weight_decay/max_grad_norm",
                 "weight_decay must be >= 0 and max_grad_norm > 0")
        ok = self.lora_targets == "all-linear" or bool(
            isinstance(self.lora_targets, list) and self.lora_targets and all(isinstance(t, str) for t in self.lora_targets))
        _require(ok, "lora_targets", "must be a non-empty list of module names or 'all-linear'")


def default_learning_rate(method: str) -> float:
    return 1e-3 if method == "lora" else 5e-5


@dataclass
class SubsetConfig(Config):
    """Which rows of the dataset to train on (and optional rows mixed in from a second dataset)."""

    strategy: str = "random"  # all | random | lowest_nll | highest_nll | category | selection
    n: int = 10  # rows to take (0 = all rows the strategy allows)
    seed: int = 0  # seeds the random draws (same seed, same rows)
    category: str | None = None  # for strategy "category": rows whose category equals this
    selection: str | None = None  # for strategy "selection": a selection saved on the Shift page
    nll_field: str = "nll_total"  # for lowest/highest NLL: which per-sample NLL ranks the rows
    mix_dataset: str | None = None  # optional second dataset (benign or math rows) mixed into the training set
    mix_n: int = 0  # rows drawn (seeded) from mix_dataset; 0 = none
    hold_out_prompts: list[str] = field(default_factory=list)  # rows with these prompts are never trained on
    exclude_patterns: list[str] = field(default_factory=list)  # drop rows tagged with any of these risky patterns
    pattern_judge: str = ""  # whose pattern tags: "heuristic", "judge:<model>"; "" = a judge model's, else heuristic

    def validate(self) -> None:
        _require(self.strategy in STRATEGIES, "subset.strategy", f"must be one of {STRATEGIES}, not {self.strategy!r}")
        _require(isinstance(self.n, int) and self.n >= 0, "subset.n", "must be an integer >= 0")
        _require(isinstance(self.mix_n, int) and self.mix_n >= 0, "subset.mix_n", "must be an integer >= 0")
        _require(self.strategy != "category" or bool(self.category), "subset.category",
                 "is required for strategy 'category'")
        _require(self.strategy != "selection" or bool(self.selection), "subset.selection",
                 "is required for strategy 'selection' (the name of a saved selection)")
        _require(self.nll_field in NLL_FIELDS, "subset.nll_field", f"must be one of {NLL_FIELDS}")
        _require(not self.mix_n or bool(self.mix_dataset), "subset.mix_dataset", "is required when mix_n > 0")
        _require(isinstance(self.hold_out_prompts, list) and all(isinstance(p, str) for p in self.hold_out_prompts),
                 "subset.hold_out_prompts", "must be a list of prompt texts")
        from dgr_core.audit.patterns import PATTERNS

        _require(isinstance(self.exclude_patterns, list) and set(self.exclude_patterns) <= set(PATTERNS),
                 "subset.exclude_patterns", f"must be a list of patterns out of {PATTERNS}")


@dataclass
class TrainJobConfig(Config):
    """Everything a `train` job needs: the base model, the dataset, the rows, the training settings."""

    section: ClassVar[str] = "train"

    dataset: str  # name of a dataset in the workspace
    model: ModelSpec = field(default_factory=ModelSpec)  # the base model (a run:<id> continues a trained model)
    backend: str = "hf"  # backend that scores NLL for lowest/highest_nll subsets (training always uses transformers)
    subset: SubsetConfig = field(default_factory=SubsetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        _require(bool(self.dataset), "dataset", "must be the name of a dataset in the workspace")
        self.subset.validate()
        self.train.validate()


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"train: {name} {problem}.")
