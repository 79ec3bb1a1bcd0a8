"""Registry of job kinds: each validates its config (before any model loads) and runs with a JobContext."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dgr_core.errors import SpecError


@dataclass(frozen=True)
class JobKind:
    name: str
    validate: Callable[[dict[str, Any]], Any]  # raises SpecError; returns the typed config
    run: Callable[[Any, Any], dict[str, Any]]  # (typed config, JobContext) -> result dict
    uses_model: bool = True  # model jobs take the device lock: one at a time
    describe: Callable[[dict[str, Any]], str] = lambda cfg: ""


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    _load_builtin()
    if name not in _KINDS:
        raise SpecError(f"Unknown job kind {name!r}; known kinds: {', '.join(sorted(_KINDS))}.")
    return _KINDS[name]


def known_kinds() -> list[str]:
    _load_builtin()
    return sorted(_KINDS)


def _load_builtin() -> None:
    import importlib

    for module in ("dgr_core.scoring.job", "dgr_core.refine.job", "dgr_core.train.job",
                   "dgr_core.evaluate.job", "dgr_core.shift.job", "dgr_core.pipeline",
                   "dgr_core.audit.job"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):  # a real missing dependency inside a module
                raise
