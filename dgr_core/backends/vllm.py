"""The vLLM backend (GPU): prompt log-probs for scoring, fast batched generation.

vLLM is imported only inside this module's methods, so the rest of DGR Lens runs without it. Scoring asks for
`prompt_logprobs` with `max_tokens=1` and `detokenize=False` on the exact token ids the segment code built, so
token boundaries are the same as with the `hf` backend. vLLM returns the log-prob of each prompt token (plus the
top-k); the rank is taken from vLLM's reported rank. Embeddings are not exposed by vLLM's generate path: the
vector is left empty (zeros) and the Shift page says so; use the `hf` backend for embedding statistics.

Multi-GPU for large models: tensor parallelism, its degree from `DGR_VLLM_TP` (the CLI and jobs started from
the UI read it alike; the job process inherits it from the shell that started the app or the CLI), e.g.
    DGR_VLLM_TP=4 dgr score --backend vllm --model Qwen/Qwen2.5-32B-Instruct --dataset STAR-1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dgr_core.backends.base import (
    Generation,
    GenerationConfig,
    ModelDescription,
    register,
    register_describer,
)
from dgr_core.errors import DGRError
from dgr_core.models.loading import ModelSpec, pick_device_dtype, resolve_model_path
from dgr_core.scoring.engine import BatchStats, TokenScores
from dgr_core.scoring.segments import PROMPT, Encoded
from dgr_core.workspace import Workspace


@register("vllm")
class VLLMBackend:
    name = "vllm"

    def __init__(self, model: ModelSpec, ws: Workspace):
        try:
            import vllm
        except ImportError as exc:
            raise DGRError("The vllm backend needs vLLM: `pip install 'dgr-lens[vllm]'` on a GPU machine "
                           "(see README, vLLM).") from exc
        _, dtype = pick_device_dtype("auto", model.dtype)
        self.spec, self.dtype, self.ws = model, dtype, ws
        self.path = resolve_model_path(model.ref, ws, model.revision)
        self.llm = vllm.LLM(model=self.path, revision=model.revision, dtype=dtype,
                            trust_remote_code=model.trust_remote_code,
                            tensor_parallel_size=int(os.environ.get("DGR_VLLM_TP", "1")))
        self.tokenizer = self.llm.get_tokenizer()

    def identity(self) -> dict[str, Any]:
        return {"name": self.path, **_identity(self.spec, self.path, self.tokenizer, self.ws, self.dtype)}

    def score(self, samples: list[Encoded], *, layer: int = -1, token_budget: int = 0,
              on_batch: Callable[[BatchStats], None] | None = None) -> Iterator[TokenScores]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=s.input_ids.tolist()) for s in samples],
                                    params, use_tqdm=False)
        if on_batch:
            n = sum(len(s.input_ids) for s in samples)
            on_batch(BatchStats(len(samples), n, n, 0.0))
        for s, out in zip(samples, outputs, strict=True):
            yield _to_scores(s, out.prompt_logprobs, self.llm.llm_engine.model_config.get_hidden_size())

    def generate(self, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
                 on_done: Callable[[int], None] | None = None) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                seed=cfg.seed)
        outs = self.llm.chat(conversations, params, use_tqdm=False)
        if on_done:
            on_done(len(conversations))
        return [Generation(o.outputs[0].text.strip(), "length" if o.outputs[0].finish_reason == "length" else "stop",
                           len(o.outputs[0].token_ids)) for o in outs]


def _to_scores(s: Encoded, prompt_logprobs: list, hidden: int) -> TokenScores:
    pos = np.nonzero(s.segments > PROMPT)[0]
    pos = pos[pos > 0]
    ids = s.input_ids[pos]
    logps, ranks = [], []
    for p, tid in zip(pos, ids, strict=True):
        entry = prompt_logprobs[p][int(tid)]
        logps.append(entry.logprob)
        ranks.append(entry.rank or 1)
    return TokenScores(s.key, ids.astype(np.int32), np.array(logps, np.float32), np.array(ranks, np.int32),
                       s.segments[pos], np.zeros(hidden, np.float32), s.truncated)


def _identity(spec: ModelSpec, path: str, tokenizer: Any, ws: Workspace, dtype: str) -> dict[str, Any]:
    from dgr_core.models.loading import cache_identity

    return {**cache_identity(spec, path, tokenizer, ws), "backend": "vllm", "dtype": dtype, "device_kind": "cuda"}


@register_describer("vllm")
def describe(spec: ModelSpec, ws: Workspace) -> ModelDescription:
    """The identity `VLLMBackend(spec).identity()` reports, without starting an engine (vLLM need not be installed:
    its tokenizer is the model's own, loaded by transformers)."""
    from dgr_core.backends.hf import load_tokenizer

    path = resolve_model_path(spec.ref, ws, spec.revision)
    _, dtype = pick_device_dtype("auto", spec.dtype)
    tok = load_tokenizer(spec, path, pad_fix=False)
    return ModelDescription(spec, "vllm", tok, lambda: _identity(spec, path, tok, ws, dtype))
