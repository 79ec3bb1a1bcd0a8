"""Model layer: resolve a model reference (embedded demo, local folder, Hugging Face id), load it with the right
device and dtype, and describe its identity for cache keys."""

from dgr_core.models.loading import (
    DEMO_MODEL,
    LoadedModel,
    ModelSpec,
    load_model,
    model_identity,
    pick_device_dtype,
    resolve_model_path,
)

__all__ = [
    "DEMO_MODEL",
    "LoadedModel",
    "ModelSpec",
    "load_model",
    "model_identity",
    "pick_device_dtype",
    "resolve_model_path",
]
