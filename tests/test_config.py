"""The strict dataclass serializer (dgr_core.config): round trips, named errors, argparse from the fields."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from dgr_core.config import Config, ConfigError, add_arguments, default_of, from_args, help_of
from dgr_core.errors import SpecError


@dataclass(frozen=True)
class Inner(Config):
    ref: str = "demo"  # which model
    revision: str | None = None


@dataclass
class Outer(Config):
    section = "outer"

    name: str  # required
    inner: Inner = field(default_factory=Inner)
    n: int = 3  # how many
    rate: float = 0.5
    flag: bool = False  # a switch
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=lambda: ["x"])
    pair: tuple[int, ...] = (1, 2)
    limits: dict[str, int] = field(default_factory=dict)
    maybe: int | None = None
    either: list[str] | str = "all"
    helped: int = field(default=7, metadata={"help": "from metadata"})


def test_round_trip_nested_and_containers():
    cfg = Outer("o", Inner("m", "v1"), n=4, rate=1, tags=["a", "b"], pair=(3,), limits={"k": 2}, maybe=5,
                either=["q"])
    d = cfg.to_dict()
    assert d["inner"] == {"ref": "m", "revision": "v1"} and d["pair"] == [3]
    back = Outer.from_dict(d)
    assert back == Outer("o", Inner("m", "v1"), n=4, rate=1.0, tags=["a", "b"], pair=(3,), limits={"k": 2},
                         maybe=5, either=["q"])
    assert isinstance(back.rate, float) and isinstance(back.pair, tuple)


@pytest.mark.parametrize("data, named", [
    ({"name": "o", "typo": 1}, "outer.typo"),
    ({"name": "o", "inner": {"reff": "x"}}, "outer.inner.reff"),
    ({"name": "o", "n": "3"}, "outer.n"),
    ({"name": "o", "n": True}, "outer.n"),
    ({"name": "o", "flag": 1}, "outer.flag"),
    ({"name": "o", "mode": "c"}, "outer.mode"),
    ({"name": "o", "tags": ["a", 2]}, "outer.tags[1]"),
    ({"name": "o", "limits": {"k": "2"}}, "outer.limits.k"),
    ({"name": "o", "inner": "demo"}, "outer.inner"),
    ({"name": "o", "either": 3}, "outer.either"),
    ({}, "outer.name"),
])
def test_bad_input_names_the_field(data, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")) as info:
        Outer.from_dict(data)
    assert isinstance(info.value, SpecError)


def test_defaults_and_help_declared_once():
    assert default_of(Outer, "n") == 3 and default_of(Outer, "tags") == ["x"]
    assert default_of(Outer, "tags") is not default_of(Outer, "tags")  # a fresh value per call
    assert help_of(Outer, "n") == "how many" and help_of(Outer, "helped") == "from metadata"


def test_argparse_from_fields():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Outer)
    ns = parser.parse_args(["--name", "cli", "--n", "9", "--flag", "--tags", "p", "q", "--mode", "b"])
    cfg = from_args(Outer, ns, inner=Inner("z"))
    assert cfg == Outer("cli", Inner("z"), n=9, flag=True, tags=["p", "q"], mode="b")
    assert from_args(Outer, parser.parse_args(["--name", "d"])) == Outer("d")
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "x", "--mode", "c"])


def test_records_on_disk_drop_unknown_keys_but_check_types():
    from dgr_core.data.schema import DatasetInfo
    from dgr_core.shift.selections import Selection

    raw = {"name": "d", "fingerprint": "f", "n_rows": 3, "origin": "x.jsonl", "written_by_a_newer_version": 1}
    assert DatasetInfo.from_dict(raw).n_rows == 3
    with pytest.raises(ConfigError, match="DatasetInfo.n_rows"):
        DatasetInfo.from_dict({**raw, "n_rows": "3"})
    sel = Selection("s", "d", ["a", "b"], extra={"map": "pca"})
    assert sel.to_dict()["n"] == 2 and Selection.from_dict(sel.to_dict()) == sel  # "n" is derived, not stored
