"""The transformers backend: scoring through `dgr_core.scoring.engine`, batched generation with left padding."""

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
        import torch

        out: list[Generation] = []
        torch.manual_seed(cfg.seed)
        order = sorted(range(len(conversations)), key=lambda i: -len(str(conversations[i])))
        results: dict[int, Generation] = {}
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            for i, gen in zip(idx, self._generate_batch([conversations[i] for i in idx], cfg), strict=True):
                results[i] = gen
            if on_done:
                on_done(len(idx))
        out = [results[i] for i in range(len(conversations))]
        return out

    def _generate_batch(self, convs: list[list[dict[str, str]]], cfg: GenerationConfig) -> list[Generation]:
        import torch

        tok, model = self.tokenizer, self.loaded.model
        texts = [generation_prompt(tok, c) for c in convs]  # the template's own generation prompt
        tok.padding_side = "left"
        try:
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        finally:
            tok.padding_side = "right"
        sampling = cfg.temperature > 0
        kwargs = {"do_sample": sampling, "max_new_tokens": cfg.max_new_tokens, "pad_token_id": tok.pad_token_id}
        if sampling:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
        with torch.inference_mode():
            seqs = model.generate(**batch, **kwargs)
        return [self._decode(row[batch["input_ids"].shape[1]:], cfg) for row in seqs]

    def _decode(self, new_ids, cfg: GenerationConfig) -> Generation:
        tok = self.tokenizer
        ids = new_ids.tolist()
        stops = {tok.eos_token_id, tok.pad_token_id} | set(_as_list(self.loaded.model.generation_config.eos_token_id))
        cut = next((i for i, t in enumerate(ids) if t in stops), None)
        finish = "stop" if cut is not None else "length"
        ids = ids if cut is None else ids[:cut]
        return Generation(tok.decode(ids, skip_special_tokens=True).strip(), finish, len(ids))


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
