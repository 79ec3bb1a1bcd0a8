"""The demo's config (`DemoConfig`) and its defaults: one miniature DGR experiment, sized for 2 CPU cores.

    cfg = DemoConfig(budgets=[5, 10], seeds=[0])     # validate() names the first bad field (SpecError)

The defaults were calibrated on the embedded model (README "DGR in miniature", benchmarks/results_demo.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from dgr_core.config import Config
from dgr_core.data.demo import DEMO_REFINE_TEMPLATE
from dgr_core.errors import SpecError
from dgr_core.models.loading import ModelSpec

KIND = "demo"


STEPS_FILE = "steps.json"


EXTERNAL_DATASET = "demo-external-refusal"


# Evaluation, identical for every model of a demo (items, decoding, seeds): 100 level-1 arithmetic items (the base
# model gets about half), AdvBench-50 (harmful; the training prompts come from StrongREJECT, minus any prompt asked
# here) and a seeded 50 of XSTest's 250 safe prompts (over-refusal; a subset for the 20-minute budget).
DEFAULT_EVAL_LIMITS = {"arithmetic": 100, "advbench50": 50, "xstest": 50}


DEFAULT_BUDGETS = (5, 10, 20)


# Calibrated on the external set (benchmarks/results_demo.md): see README "DGR in miniature".
DEFAULT_LR = 3e-4


DEFAULT_EPOCHS = 3


SETS = ("original", "refined")


@dataclass
class DemoConfig(Config):
    """One miniature DGR experiment: a sweep of 2 training sets x len(budgets) x len(seeds) LoRA runs, every run
    evaluated with identical settings. The defaults are sized for 2 CPU cores and about 20 minutes on the embedded
    model (measured: benchmarks/results_demo.md; the learning rate and epochs were calibrated there too)."""

    section: ClassVar[str] = "demo"

    model: ModelSpec = field(default_factory=ModelSpec)  # the target model: it refines, is trained, is evaluated
    backend: str = "hf"  # generation / scoring backend ("hf", "vllm", "fake"); training always uses transformers
    dataset: str = EXTERNAL_DATASET  # the external safety set whose samples are refined
    n_refine: int = 20  # samples drawn from it (seed `data_seed`) and refined: the largest budget
    budgets: list[int] = field(default_factory=lambda: list(DEFAULT_BUDGETS))  # SFT sizes N (samples per run)
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # one SFT run per seed, budget and set
    data_seed: int = 0  # which samples are drawn for refinement
    epochs: int = DEFAULT_EPOCHS  # SFT epochs (LoRA)
    learning_rate: float = DEFAULT_LR  # peak LR; lr 1e-3 x 3 made every arm refuse everything (issue #13)
    method: str = "lora"  # "lora" or "full"
    # The refine prompt (joint mode). The general default asks for a restatement, which a 135M model answers by
    # copying the refusal sentence; this one makes it write its own refusal with a reason (dgr_core.data.demo).
    refine_template: str = field(default_factory=lambda: DEMO_REFINE_TEMPLATE)
    refine_max_new_tokens: int = 96  # token limit of one rewrite (a rewrite cut there falls back)
    # Require a <think> block in each rewrite. Off by default: the embedded SmolLM2 never writes one, so every
    # rewrite would fall back to the original and the demo would compare a set with itself. Turn it on for a
    # reasoning model (a rewrite without reasoning then falls back instead of dropping the reasoning).
    expect_think: bool = False
    eval_max_new_tokens: int = 32  # token limit of one evaluation answer (level-1 arithmetic needs ~10)
    eval_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EVAL_LIMITS))  # items per benchmark
    arithmetic_levels: list[int] = field(default_factory=lambda: [1])  # the base model gets about half right
    eval_seed: int = 0  # which benchmark items are drawn (the same for every model: paired comparisons)
    # Prompts per generate call. Large on purpose: a 135M model on CPU spends most of a decoding step on overhead,
    # so 50 prompts per step cost little more than 16 (the safety sets are 50 items: one batch each).
    batch_size: int = 50

    @property
    def n_runs(self) -> int:
        """Trained runs in the sweep: 2 sets x budgets x seeds."""
        return 2 * len(self.budgets) * len(self.seeds)

    def validate(self) -> None:
        """SpecError naming the first bad field."""
        for name in ("n_refine", "epochs", "refine_max_new_tokens", "eval_max_new_tokens", "batch_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, "must be an integer >= 1")
        _require(_distinct_ints(self.budgets) and all(n >= 1 for n in self.budgets), "budgets",
                 "must be a non-empty list of distinct integers >= 1")
        _require(max(self.budgets) <= self.n_refine, "budgets",
                 f"({max(self.budgets)}) must not exceed n_refine ({self.n_refine})")
        _require(_distinct_ints(self.seeds), "seeds", "must be a non-empty list of distinct integers")
        _require(isinstance(self.learning_rate, int | float) and 0 < self.learning_rate < 1, "learning_rate",
                 "must be a number in (0, 1)")
        _require(self.method in ("lora", "full"), "method", "must be 'lora' or 'full'")
        _require(isinstance(self.eval_limits, dict) and bool(self.eval_limits), "eval_limits",
                 "must map at least one benchmark name to a number of items")
        for name, limit in self.eval_limits.items():
            _require(isinstance(limit, int) and limit >= 1, f"eval_limits.{name}", "must be an integer >= 1")


def _distinct_ints(values: Any) -> bool:
    return (isinstance(values, list) and bool(values) and all(isinstance(v, int) for v in values)
            and len(set(values)) == len(values))


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise SpecError(f"demo: {name} {problem}.")
