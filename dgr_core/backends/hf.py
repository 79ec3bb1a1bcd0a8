"""The transformers backend: scoring through `dgr_core.scoring.engine`; batched generation with left padding and
the KV cache through `dgr_core.backends.batching`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dgr_core.backends.base import (
    Generation,
    GenerationConfig,
    ModelDescription,
    register,
    register_describer,
)
from dgr_core.models.loading import LoadedModel, ModelSpec, load_model
from dgr_core.render import generation_prompt
from dgr_core.scoring.engine import BatchStats, TokenScores, iter_scores
from dgr_core.scoring.segments import Encoded
from dgr_core.workspace import Workspace

# Tokens per batch. On CPU, batching buys little (the matmuls are already large) while padding masks force the
# slower attention path and activations grow with the batch: small batches are as fast and use a third of the
# memory (benchmarks/RESULTS.md). On GPUs, large batches are what keeps the device busy.
DEFAULT_BUDGET = {"cpu": 1024, "cuda": 65536}


@register("hf")
class HFBackend:
    name = "hf"

    def __init__(self, model: ModelSpec, ws: Workspace):
        self.loaded: LoadedModel = load_model(model, ws)
        self.tokenizer = self.loaded.tokenizer

    def identity(self) -> dict[str, Any]:
        return {**self.loaded.identity, "backend": self.name, "dtype": self.loaded.dtype,
                "device_kind": self.loaded.device.split(":")[0]}

    def score(self, samples: list[Encoded], *, layer: int = -1, token_budget: int = 0,
              on_batch: Callable[[BatchStats], None] | None = None) -> Iterator[TokenScores]:
        budget = token_budget or DEFAULT_BUDGET.get(self.loaded.device.split(":")[0], 8192)
        return iter_scores(self.loaded.model, samples, token_budget=budget, layer=layer,
                           pad_id=self.tokenizer.pad_token_id, on_batch=on_batch)

    def generate(self, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
                 on_done: Callable[[int], None] | None = None) -> list[Generation]:
        """Length-sorted, left-padded, KV-cached batches of `cfg.batch_size` prompts (dgr_core.backends.batching)."""
        from dgr_core.backends.batching import generate_batched

        tok = self.tokenizer
        prompts = [tok(self._render(c), add_special_tokens=False)["input_ids"] for c in conversations]
        return generate_batched(self.loaded.model, prompts, cfg, pad_id=tok.pad_token_id, stops=self._stops(),
                                decode=lambda ids: tok.decode(ids, skip_special_tokens=True), on_done=on_done)

    def _render(self, conversation: list[dict[str, str]]) -> str:
        """The prompt text: the template's own generation prompt (dgr_core.render, shared with every path)."""
        return generation_prompt(self.tokenizer, conversation)

    def _stops(self) -> set[int]:
        """End of turn: the tokenizer's eos and pad and every eos id of the model's generation config."""
        tok = self.tokenizer
        return {tok.eos_token_id, tok.pad_token_id} | set(_as_list(self.loaded.model.generation_config.eos_token_id))


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, list | tuple) else [x]


def load_tokenizer(spec: ModelSpec, path: str, *, pad_fix: bool = True) -> Any:
    """The tokenizer of a resolved model path, exactly as `load_model` sets it up (so its hash agrees)."""
    from transformers import AutoTokenizer

    from dgr_core.errors import ModelLoadError

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except Exception as exc:  # a broken tokenizer file raises anything (KeyError, …): a named error instead
        raise ModelLoadError(f"Could not load the tokenizer of {spec.ref!r} from {path}: {exc!r}"[:500]) from exc
    if pad_fix and tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@register_describer("hf")
def describe(spec: ModelSpec, ws: Workspace) -> ModelDescription:
    """What `HFBackend(spec).identity()` reports, from the tokenizer and the weight files' hash (no weights load)."""
    from dgr_core.models.loading import cache_identity, pick_device_dtype, resolve_model_path

    path = resolve_model_path(spec.ref, ws, spec.revision)
    tok = load_tokenizer(spec, path)
    device, dtype = pick_device_dtype(spec.device, spec.dtype)
    return ModelDescription(spec, "hf", tok, lambda: {**cache_identity(spec, path, tok, ws), "backend": "hf",
                                                      "dtype": dtype, "device_kind": device.split(":")[0]})
