"""The backend protocol and registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from dgr_core.config import Config
from dgr_core.errors import DGRError
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.engine import BatchStats, TokenScores
from dgr_core.scoring.segments import Encoded
from dgr_core.workspace import Workspace


@dataclass(frozen=True)
class GenerationConfig(Config):
    """Decoding settings; recorded beside every generated output."""

    section: ClassVar[str] = "generation"

    max_new_tokens: int = 256  # a response still going at this limit is marked finish_reason="length"
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8  # prompts per generate() call (transformers backend)
    n: int = 1  # samples per prompt; generate() returns n per conversation, next to each other

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.n == 1:  # the default is left out, so settings (and cache keys) written before `n` existed match
            d.pop("n", None)
        return d


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (end of turn) or "length" (cut at max_new_tokens)
    n_tokens: int


class Backend(Protocol):
    name: str
    tokenizer: Any

    def identity(self) -> dict[str, Any]:
        """Model identity + backend + dtype + device kind: everything of the model that goes into a cache key."""

    def score(self, samples: list[Encoded], *, layer: int = -1, token_budget: int = 0,
              on_batch: Callable[[BatchStats], None] | None = None) -> Iterator[TokenScores]:
        """Teacher-forced log-probs of the response tokens and pooled embeddings, one per sample."""

    def generate(self, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
                 on_done: Callable[[int], None] | None = None) -> list[Generation]:
        """Assistant replies to chat conversations, in order: `cfg.n` per conversation, next to each other."""


_REGISTRY: dict[str, Callable[..., Backend]] = {}
_DESCRIBERS: dict[str, Callable[[ModelSpec, Workspace], ModelDescription]] = {}


@dataclass
class ModelDescription:
    """A model as a backend would see it, without its weights: the tokenizer at once, the cache identity on first
    use (equal to `backend.identity()` after loading, minus what no cache key uses: name, n_params, architecture)."""

    spec: ModelSpec
    backend: str
    tokenizer: Any
    identity_of: Callable[[], dict[str, Any]]
    _identity: dict[str, Any] | None = None

    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = self.identity_of()
        return self._identity


_SCRIPTED: set[str] = set()  # backends whose "model" is a script, not weight files (no path to resolve)


def register_describer(name: str, *, weight_files: bool = True):
    """Register how backend `name` describes a model without loading it (a capability every backend has), and
    whether its models are weight files on disk or a hub (False for scripted test backends)."""
    def deco(fn: Callable[[ModelSpec, Workspace], ModelDescription]):
        _DESCRIBERS[name] = fn
        if not weight_files:
            _SCRIPTED.add(name)
        return fn
    return deco


def uses_weight_files(backend: str) -> bool:
    """False for a scripted backend (`fake`): its model ref names no folder or hub id, and no tokenizer file."""
    _load_builtin()
    return backend not in _SCRIPTED


def describe_model(spec: ModelSpec, backend: str, ws: Workspace | None = None) -> ModelDescription:
    """Tokenizer and cache identity of `spec` under `backend`, no weights loaded (ModelLoadError if not found)."""
    _load_builtin()
    if backend not in _DESCRIBERS:
        raise DGRError(f"Unknown backend {backend!r}; available: {', '.join(sorted(_REGISTRY))}.")
    return _DESCRIBERS[backend](spec, ws or Workspace.default())
AUTO = "auto"  # a choice, not a backend: resolve_backend turns it into one


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def get_backend(name: str, model: ModelSpec, ws: Workspace | None = None) -> Backend:
    """Build the backend `name` for `model` (the model loads here)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise DGRError(f"Unknown backend {name!r}; available: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name](model, ws or Workspace.default())


def vllm_pays() -> bool:
    """True where vLLM is importable and a CUDA GPU is present: there it is the faster way to generate."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_backend(name: str, *, generation: bool = False) -> str:
    """The backend a job runs on. "auto" is `vllm` for generation-heavy work (refine, evaluate, audit) where vLLM
    pays (`vllm_pays`), else `hf`; scoring stays on `hf` (embeddings, and one backend per score cache)."""
    if name != AUTO:
        return name
    return "vllm" if generation and vllm_pays() else "hf"


def available_backends() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Importing registers them; vllm's module imports vllm lazily, inside its factory.
    from dgr_core.backends import fake, hf, vllm  # noqa: F401
