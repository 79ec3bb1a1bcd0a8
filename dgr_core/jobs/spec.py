"""The frozen job spec (`job.json`) and its validation."""

from __future__ import annotations

import platform
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from dgr_core.errors import SpecError
from dgr_core.workspace import atomic_write_json, read_json

SPEC_FILE = "job.json"
SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("dgr-lens", "torch", "transformers", "peft", "datasets"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class JobSpec:
    kind: str  # "score", "refine", "train", "evaluate", "project", "demo"
    config: dict[str, Any]
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    created_at: str = field(default_factory=utc_now)
    name: str = ""
    workspace: str = ""  # the workspace root the job reads and writes
    versions: dict[str, str] = field(default_factory=versions)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_spec(run_dir: Path, spec: JobSpec) -> None:
    atomic_write_json(Path(run_dir) / SPEC_FILE, spec.to_dict())


def load_spec(run_dir: Path) -> JobSpec:
    """Read and validate `job.json`; every problem is a SpecError raised before any model is loaded."""
    path = Path(run_dir) / SPEC_FILE
    if not path.is_file():
        raise SpecError(f"{path}: no job spec found.")
    try:
        raw = read_json(path)
    except ValueError as exc:
        raise SpecError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a JSON object.")
    missing = [k for k in ("kind", "config") if k not in raw]
    if missing:
        raise SpecError(f"{path}: missing field(s) {', '.join(missing)}.")
    if not isinstance(raw["config"], dict):
        raise SpecError(f"{path}: 'config' must be an object.")
    known = JobSpec.__dataclass_fields__
    spec = JobSpec(**{k: v for k, v in raw.items() if k in known})
    from dgr_core.jobs.kinds import get_kind

    get_kind(spec.kind).validate(spec.config)  # raises SpecError naming the field
    return spec
