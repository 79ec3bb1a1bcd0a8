"""Registry of job kinds: each is (Config type, Result type, run), validated before any model loads.

    register_kind(JobKind("score", ScoreJobConfig, ScoreResult, run, check=check_backend))

`JobKind.validate(raw)` is the one way a spec's config becomes typed: `Config.from_dict` (unknown keys and wrong
types rejected, naming `config.<field>`), then the config's own `validate()`, then the kind's `check` (what needs
the environment: the backend registry, the workspace). `JobKind.make_result` turns what `run` returns into the
dict written as `result.json`, through the Result type (dgr_core.jobs.results).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dgr_core.config import Config, ConfigError
from dgr_core.errors import SpecError


def _no_check(cfg: Any) -> None:
    return None


@dataclass(frozen=True)
class JobKind:
    name: str
    config: type[Config]  # the typed config (job.json's "config")
    result: type[Config]  # the typed result (result.json)
    run: Callable[[Any, Any], Any]  # (typed config, JobContext) -> Result (or its dict)
    check: Callable[[Any], None] = _no_check  # checks that need the environment; raise SpecError
    uses_model: bool = True  # model jobs take the device lock: one at a time
    describe: Callable[[Any], str] = lambda cfg: ""  # typed config -> one line ("train lora of demo on 10 rows …")

    def validate(self, raw: Any) -> Any:
        """The typed config of a spec, or a SpecError naming the kind and the field (no model loads here)."""
        try:
            cfg = self.config.from_dict(raw, "config")
            cfg.validate()
        except ConfigError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        self.check(cfg)
        return cfg

    def summary(self, raw: Any) -> str:
        """One line saying what a run of this kind with spec config `raw` does; the kind's name when the config
        does not fit its type (an old or hand-edited job.json)."""
        try:
            return self.describe(self.config.from_dict(raw, "config")) or self.name
        except SpecError:
            return self.name

    def make_result(self, value: Any) -> dict[str, Any]:
        """`run`'s return value as the result.json dict, checked against the Result type."""
        typed = value if isinstance(value, self.result) else self.result.from_dict(value, f"{self.name} result")
        return typed.to_dict()


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
