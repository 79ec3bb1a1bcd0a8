"""Typed configs at the job boundary: one strict serializer over dataclasses, and argparse built from the fields.

Every config a job spec carries (ScoreJobConfig, RefineConfig, TrainJobConfig, EvalConfig, DemoConfig, …) and
every result a job writes is a dataclass deriving from `Config`, so they all round-trip through one mechanism:

    cfg = RefineConfig.from_dict({"dataset": "star1", "limit": 5})   # ConfigError naming `refine.bad_key`
    cfg.to_dict()                                                    # plain JSON types, nested dataclasses too
    cfg.validate()                                                   # the class's own value checks (one name)

    parser = argparse.ArgumentParser(); add_arguments(parser, TrainConfig)    # --epochs, --learning-rate, …
    TrainConfig = from_args(TrainConfig, parser.parse_args())                # defaults declared once: the field
    default_of(TrainConfig, "epochs")                                         # what a page's widget starts at

`from_dict` is strict: an unknown key or a value of the wrong type raises `ConfigError` (a `SpecError`) naming
the dotted path of the field (`train.subset.n: expected int, got str '10'`). Supported field types: the JSON
primitives (str, int, float — an int is accepted for a float — bool, None), `Optional`/unions of those, `Literal`,
nested `Config` dataclasses, `list`/`tuple`/`dict[str, …]` of those, and `Any`. A class with its own JSON form
(e.g. a field that also accepts a bare string) defines `_from_json(value, where)` and `_to_json()`.

Why a small serializer and not pydantic or msgspec: neither is a dependency today (pydantic arrives only
transitively, at a version we do not pin), the configs must stay plain dataclasses (frozen ones are hashed as
cache keys, and other modules construct them positionally), and what is needed — strict keys, named fields,
argparse from the fields — is about 150 lines here, with no behaviour hidden in a validator framework.

Help text for the CLI comes from `field(metadata={"help": ...})` when given, else from the field's trailing
`# comment` in the class source (the house style of this code base), so a field is documented once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from dgr_core.errors import SpecError

T = TypeVar("T")
C = TypeVar("C", bound="Config")
_MISSING = dataclasses.MISSING


class ConfigError(SpecError):
    """A config dict does not match its dataclass: unknown key, wrong type or bad value; names the field."""


class Config:
    """Base of every typed config / result: `to_dict`, strict `from_dict`, and `validate` (override it)."""

    section: typing.ClassVar[str] = ""  # the name errors start with (e.g. "train"); "" = the class name
    # A record read back from disk (dataset meta.json, a saved selection) may carry keys an older or newer version
    # wrote, or derived ones (a selection's "n"): such classes set this False and unknown keys are dropped, not
    # refused. Configs at the job boundary keep it True. Types are checked either way.
    strict_keys: typing.ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: Any, where: str | None = None) -> C:
        return from_dict(cls, data, where)

    def validate(self) -> None:
        """Check the values (ConfigError naming the field); types were already checked by `from_dict`."""


def require(ok: bool, where: str, problem: str) -> None:
    """ConfigError `where problem.` unless `ok` (the one helper every `validate` uses)."""
    if not ok:
        raise ConfigError(f"{where} {problem}.")


def _section(cls: type) -> str:
    return getattr(cls, "section", "") or cls.__name__


# ---- to_dict ---------------------------------------------------------------------------------------------------

def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain JSON types (nested dataclasses, tuples as lists)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a dataclass instance, not {type(obj).__name__}")
    return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _to_json(value: Any) -> Any:
    if hasattr(value, "_to_json"):
        return value._to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


# ---- from_dict -------------------------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (memoized: `from __future__ import annotations` makes them text)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
    """`cls` built from `data`, strictly: ConfigError naming `where.field` on an unknown key or a wrong type.
    Missing keys take the field's default; a missing required field is an error too."""
    where = where or _section(cls)
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {_show(data)}")
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown and not getattr(cls, "strict_keys", True):
        data, unknown = {k: v for k, v in data.items() if k in names}, []
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                          f"known in {where}: {', '.join(names)}")
    hints = _hints(cls)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    missing = [n for n, f in names.items() if n not in kwargs and f.default is _MISSING
               and f.default_factory is _MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(f'{where}.{k}' for k in missing)}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        return _convert_union(args, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, not {_show(value)}")
        return value
    if origin in (list, tuple, dict):
        return _convert_container(origin, args, value, where)
    if isinstance(tp, type) and hasattr(tp, "_from_json"):
        return tp._from_json(value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return _convert_scalar(tp, value, where)


def _convert_union(args: tuple, value: Any, where: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{where}: must not be null")
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _convert(arg, value, where)
        except ConfigError as exc:
            errors.append(str(exc).split(": ", 1)[-1])
    raise ConfigError(f"{where}: {' or '.join(errors)}")


def _convert_container(origin: type, args: tuple, value: Any, where: str) -> Any:
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {_show(value)}")
        vt = args[1] if args else Any
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {_show(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(args, value, strict=True)))
    item = args[0] if args else Any
    items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is type(None) or tp is None:
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {name}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


# ---- defaults, help, argparse ------------------------------------------------------------------------------

def default_of(cls: type, name: str) -> Any:
    """The declared default of field `name` (a fresh value from its factory): what widgets and flags start at."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise KeyError(f"{cls.__name__} has no field {name!r}")
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


@cache
def _source_comments(cls: Any) -> dict[str, str]:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, re.M):
        out.setdefault(m.group(1), m.group(2).strip())
    return out


def help_of(cls: type, name: str) -> str:
    """The field's help: `metadata["help"]`, else its trailing comment in the class source."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.metadata.get("help") or _source_comments(cls).get(name, "")


def _flag_type(tp: Any) -> tuple[Any, dict[str, Any]] | None:
    """(scalar type, extra add_argument kwargs) for a field a flag can set, else None (nested configs)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        return _flag_type(inner[0]) if len(inner) == 1 else None
    if origin is Literal:
        return type(args[0]), {"choices": list(args)}
    if origin in (list, tuple) and args and args[0] in (str, int, float):
        return args[0], {"nargs": "*"}
    if tp in (str, int, float, bool):
        return tp, {}
    return None


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: tuple[str, ...] = (),
                  only: tuple[str, ...] = ()) -> None:
    """One `--flag` per scalar field of `cls` (underscores become dashes), default and help from the field.
    Booleans get `--flag / --no-flag`. Nested configs are skipped: the caller adds what it exposes."""
    for f in dataclasses.fields(cls):
        if f.name in exclude or (only and f.name not in only):
            continue
        spec = _flag_type(_hints(cls)[f.name])
        if spec is None:
            continue
        tp, extra = spec
        flag = "--" + f.name.replace("_", "-")
        default = default_of(cls, f.name) if (f.default is not _MISSING or f.default_factory is not _MISSING) else None
        text = help_of(cls, f.name).replace("%", "%%")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=tp, default=default, help=text,
                                required=default is None and f.default is _MISSING
                                and f.default_factory is _MISSING, **extra)


def from_args(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """`cls` from the parsed flags `add_arguments` added (plus `overrides`, e.g. nested configs), strictly."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data = {k: v for k, v in vars(ns).items() if k in names}
    hints = _hints(cls)
    for k, v in list(data.items()):
        if isinstance(v, list) and get_origin(hints[k]) is tuple:
            data[k] = tuple(v)
    return from_dict(cls, {**_to_json_flat(data), **overrides})


def _to_json_flat(data: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
