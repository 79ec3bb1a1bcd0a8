"""`dgr shift`, `dgr compare --export`, `dgr safety-tax` and `dgr report` run headless on the same core functions
the pages call, and agree with them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_safety_tax import plant_workspace
from test_shift_analysis import FAKE, frames, save_and_score

from dgr_core.cli import main
from dgr_core.data.store import DatasetStore
from dgr_core.safety_tax import collect, results_table
from dgr_core.shift import analysis as A

FAKE_FLAGS = ["--model", "demo", "--backend", "fake"]  # = FAKE


def test_flags_build_the_same_score_config_as_the_dataclass_defaults():
    from dgr_core.cli import build_parser
    from dgr_core.cli_views import _score_config

    assert _score_config(build_parser().parse_args(["shift", "a", "b", *FAKE_FLAGS])) == FAKE


def test_shift_prints_and_writes_the_pages_table(ws, tmp_path, capsys):
    sets = save_and_score(ws)
    out = tmp_path / "stats.csv"
    assert main(["shift", "own", "external", "refined", *FAKE_FLAGS, "--csv", str(out), "--json",
                 str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    assert "Classifier AUC" in printed and "external vs own" in printed
    table = pd.read_csv(out)
    page = A.shift_stats_frame(A.pairwise_stats(ws, sets, segment="total"))  # what the Shift page shows
    assert table["statistic"].tolist() == page["statistic"].tolist()
    assert table["comparison"].tolist() == page["comparison"].tolist()
    assert len(json.loads((tmp_path / "s.json").read_text())) == len(page)


def test_shift_names_the_command_that_scores_what_is_missing(ws, capsys):
    save_and_score(ws)
    DatasetStore(ws).save("fresh", frames(4)["own"].assign(answer="new"), origin="test")
    assert main(["shift", "own", "fresh", *FAKE_FLAGS]) == 2
    assert "dgr score --dataset fresh --model demo --backend fake" in capsys.readouterr().err


def test_compare_export_writes_the_pages_html(ws, tmp_path, capsys):
    save_and_score(ws)
    assert main(["compare", "external", "refined", *FAKE_FLAGS, "--n", "3", "--export", str(tmp_path / "x")]) == 0
    files = sorted((tmp_path / "x").glob("*.html"))
    assert len(files) == 3
    doc = files[0].read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>") and "external vs refined" in doc and "Word diff" in doc
    assert "<script" not in doc and "surprisal" in doc.lower()
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("1. ext-") and "ΔNLL" in listed[0]


def test_safety_tax_table_as_csv_and_json(ws, tmp_path, capsys):
    plant_workspace(ws)
    csv, js = tmp_path / "t.csv", tmp_path / "t.json"
    assert main(["safety-tax", "--backend", "fake", "--csv", str(csv), "--json", str(js),
                 "--x", "nll_total", "--y", "reasoning_avg"]) == 0
    page = results_table(collect(ws, backend="fake"))  # what the Safety-tax page shows
    table = pd.read_csv(csv)
    assert table["method"].tolist() == page["method"].tolist() == ["base model", "SFT", "SFT on refined"]
    assert table["reasoning avg"].tolist() == pytest.approx(page["reasoning avg"].tolist())
    assert [r["method"] for r in json.loads(js.read_text())] == page["method"].tolist()
    assert "Pearson" in capsys.readouterr().out


def test_safety_tax_on_an_empty_workspace_says_so(ws, capsys):
    assert main(["safety-tax"]) == 2
    assert "No finished training runs" in capsys.readouterr().err


def test_report_from_flags_built_on_the_options_fields(ws, tmp_path):
    plant_workspace(ws)
    out = tmp_path / "r.html"
    assert main(["report", "--out", str(out), "--backend", "fake", "--title", "Lab meeting", "--no-budget"]) == 0
    doc = out.read_text(encoding="utf-8")
    assert "Lab meeting" in doc and "Data budget" not in doc and "Results" in doc
