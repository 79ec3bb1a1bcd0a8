"""The target model without its weights: the identity that locates its scores, and its tokenizer.

The identity comes from the backend's own describer (`dgr_core.backends.base.describe_model`), the same function
the loaded backend reports through, so a key computed here equals the key a score job wrote — also for a
`run:<id>` model, whose identity carries the run and its base model.

    handle = model_handle(ModelSpec("run:20260101-train-ab12"), "hf", ws)
    score_meta(handle, ScoreConfig(model=handle.spec))   # what the score cache keys on
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgr_core.backends.base import describe_model, uses_weight_files
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, op_meta
from dgr_core.scoring.cache import canonical_json
from dgr_core.shift.memo import Memo
from dgr_core.workspace import Workspace


@dataclass
class ModelHandle:
    """The target model's cache identity and its tokenizer: enough to find and read its scores."""

    spec: ModelSpec
    backend: str
    identity: dict[str, Any]
    tokenizer: Any


_HANDLES = Memo(4)


def model_handle(spec: ModelSpec, backend: str, ws: Workspace) -> ModelHandle:
    """Identity + tokenizer of `spec` under `backend`, equal to what that backend reports after loading the model.

    Memoized per process on (spec, backend, workspace, weight-file stamps), so it is instant after the first call.
    """
    key = (spec, backend, str(ws.root), _weights_stamp(spec, backend, ws))
    hit = _HANDLES.get(key)
    if hit is None:
        described = describe_model(spec, backend, ws)
        hit = _HANDLES.put(key, ModelHandle(spec, backend, described.identity, described.tokenizer))
    return hit


def _weights_stamp(spec: ModelSpec, backend: str, ws: Workspace) -> str:
    """Path and file stamps of the weights behind `spec` ("" for a scripted backend; a hub id has no files): a
    retrained run or a replaced folder gets a new handle."""
    if not uses_weight_files(backend):
        return ""
    from dgr_core.models.loading import resolve_model_path

    folder = Path(resolve_model_path(spec.ref, ws, spec.revision))
    if not folder.is_dir():
        return str(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"))
    return canonical_json([str(folder), *[(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]])


def score_meta(handle: ModelHandle, cfg: ScoreConfig) -> dict[str, Any]:
    """The score cache's operation metadata for this model and config (what `score_frame` keys on)."""
    return op_meta(handle.identity, cfg)
