"""The heuristic baseline on real data: every row of STAR-1 and the No-CoT split tagged with a valid tag set, and
its precision / recall on the hand-labelled set (tests/data/audit_labelled.jsonl: ids into ../shared/data plus
labels and a one-line justification each; the text is read from the shared data at test time)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dgr_core.audit import stats
from dgr_core.audit.config import AuditConfig
from dgr_core.audit.engine import HeuristicJudge, audit_frame
from dgr_core.audit.heuristic import heuristic_tags, trace_decision
from dgr_core.audit.labelled import SOURCES, labelled_frame, read_labels
from dgr_core.audit.patterns import PATTERNS, check_flags
from dgr_core.data.loaders import load_file

LABELS = Path(__file__).parent / "data" / "audit_labelled.jsonl"


def test_labels_file_is_well_formed():
    labels = read_labels(LABELS)
    assert 30 <= len(labels) <= 60 and labels["id"].is_unique
    assert set(labels["source"]) == {"STAR-1", "nocot", "constructed"}
    assert labels["why"].str.len().gt(10).all()
    for p in PATTERNS:
        assert set(labels[p]) <= {0, 1}
        assert labels[p].sum() >= 2, f"{p}: too few positives to measure recall"


@pytest.fixture(scope="module")
def labelled(shared_data):
    return labelled_frame(LABELS, shared_data)


def heuristic_table(df: pd.DataFrame) -> pd.DataFrame:
    recs = HeuristicJudge().judge(df.to_dict("records"))
    return pd.DataFrame([{"id": i, **r} for i, r in zip(df["id"], recs, strict=True)])


def test_heuristic_precision_recall_on_the_labelled_set(labelled):
    df, gold = labelled
    pr = stats.precision_recall(heuristic_table(df), gold).set_index("pattern")
    assert (pr["n"] == len(gold)).all()
    # A floor that catches a broken rule (figures in README / benchmarks/RESULTS.md); not a target.
    assert (pr["recall"] >= 0.5).all(), pr
    assert (pr["precision"] >= 0.4).all(), pr


def test_rows_without_reasoning_get_no_trace_pattern(labelled):
    df, _ = labelled
    nocot = df[df["source"] == "nocot"]
    assert len(nocot) >= 5
    for r in nocot.to_dict("records"):
        tags = heuristic_tags(r)
        assert all(tags[p] == 0 for p in PATTERNS) and "no reasoning" in tags["evidence"]


def test_trace_decision_reads_the_conclusion():
    assert trace_decision("Maybe I'll explain it. On reflection, I should refuse this request.") == "refuse"
    assert trace_decision("Risky? I must refuse. Wait. It is benign. It is fine. Let me outline the steps.") == "comply"
    assert trace_decision("Just thinking aloud.") == ""


@pytest.mark.parametrize("name", list(SOURCES))
def test_heuristic_tags_every_row_of_the_real_datasets(ws, shared_data, name):
    df, _ = load_file(shared_data / SOURCES[name])
    result = audit_frame(ws, df, AuditConfig(dataset=name))
    t = result.table
    assert len(t) == len(df) == 1000 and (t["status"] == "ok").all()
    assert t["id"].tolist() == df["id"].astype(str).tolist()
    for rec in t.to_dict("records"):
        assert check_flags(rec) is None, rec["id"]
    if name == "nocot":  # every response is the same empty-think refusal
        assert t[list(PATTERNS)].eq(0).all().all()
    else:
        assert t[list(PATTERNS)].sum().gt(0).sum() >= 3  # the rules fire, on several patterns
