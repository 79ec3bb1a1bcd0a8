"""The Datasets page in AppTest: lists the demo datasets; imports STAR-1 by path and shows one sample's prompt,
reasoning and answer apart; shows errors (malformed file, wrong mapping, name clash, unknown Hub id offline, bad
regex) while the existing datasets stay as they were; filters by regex; counts lengths with the target model's
tokenizer; submits a score job; deletes a dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dgr_core.data import stats as S
from dgr_core.data.demo import DEMO_EXTERNAL, DEMO_GSM8K
from dgr_core.data.store import DatasetStore
from dgr_core.jobs import manager
from dgr_core.jobs.results import ScoreResult
from dgr_core.models.loading import ModelSpec

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "data.py")


@pytest.fixture(autouse=True)
def _data_roots(tmp_path, monkeypatch):
    """The app imports paths only inside its data roots: these tests write their files under tmp_path."""
    monkeypatch.setenv("DGR_DATA_ROOTS", f"{tmp_path}:{REPO.parent / 'shared' / 'data'}")


def open_page(backend: str = "fake", **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["backend"] = backend
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def dataset_list(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "fingerprint" in d.value.columns)


def browser_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "think_status" in d.value.columns and "prompt" in d.value.columns)


def snapshot(ws) -> dict[str, str]:
    return {i.name: i.fingerprint for i in DatasetStore(ws).list()}


def import_path(at: AppTest, path: Path | str) -> AppTest:
    at.text_input(key="ds_path").input(str(path)).run()  # the button is enabled once a path is there
    return at.button(key="ds_import_path").click().run()


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def test_lists_the_demo_datasets(demo_ws):
    at = open_page()
    assert not at.exception
    table = dataset_list(at).set_index("name")
    assert table.loc[DEMO_EXTERNAL, "rows"] == 313 and table.loc[DEMO_GSM8K, "rows"] == 100
    assert table.loc[DEMO_GSM8K, "think closed"] == 100
    assert table.loc[DEMO_EXTERNAL, "fingerprint"] == DatasetStore(demo_ws).info(DEMO_EXTERNAL).fingerprint
    assert at.selectbox(key="ds_selected").options == sorted([DEMO_EXTERNAL, DEMO_GSM8K])
    assert "313 of 313 rows" in [c.value for c in at.caption]


def test_empty_workspace_offers_the_demo_datasets(ws):
    at = open_page()
    assert not at.exception and any("No datasets yet" in i.value for i in at.info)
    at.button(key="ds_add_demo").click().run()
    assert not at.exception
    assert set(snapshot(ws)) == {DEMO_EXTERNAL, DEMO_GSM8K}
    assert set(dataset_list(at)["name"]) == {DEMO_EXTERNAL, DEMO_GSM8K}


def test_import_star1_by_path_shows_reasoning_and_answer_apart(demo_ws, shared_data):
    star = shared_data / "STAR-1" / "data" / "STAR-1.json"
    at = import_path(open_page(), star)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, errors(at)
    assert any("Imported **STAR-1**: 1000 rows, shape `star1`" in s.value for s in at.success)
    assert at.selectbox(key="ds_selected").value == "STAR-1"
    first = DatasetStore(demo_ws).load("STAR-1").iloc[0]
    codes = [c.value for c in at.code]
    assert codes[:3] == [first["prompt"], first["reasoning"], first["answer"]]
    assert "<think>" not in first["reasoning"] + first["answer"] and first["reasoning"] and first["answer"]
    assert any("think: closed" in m.value for m in at.markdown)
    assert set(snapshot(demo_ws)) == {DEMO_EXTERNAL, DEMO_GSM8K, "STAR-1"}


def test_upload_is_saved_under_a_sanitized_name_and_imported(demo_ws):
    at = open_page()
    csv = b"prompt,response\nHow do I pick a lock?,<think>Lock picking can be legal.</think>Use a tension wrench.\n"
    at.file_uploader(key="ds_upload").set_value(("../../My Data (v2).csv", csv, "text/csv")).run()
    at = at.button(key="ds_import_upload").click().run()
    assert not at.exception and not at.error, errors(at)
    assert [p.name for p in demo_ws.uploads.iterdir()] == ["My_Data_v2_.csv"]
    row = DatasetStore(demo_ws).load("My_Data_v2_").iloc[0]
    assert (row["reasoning"], row["answer"]) == ("Lock picking can be legal.", "Use a tension wrench.")
    assert at.selectbox(key="ds_selected").value == "My_Data_v2_"


def test_malformed_file_shows_an_error_and_leaves_the_datasets(demo_ws, tmp_path):
    before = snapshot(demo_ws)
    bad = tmp_path / "broken.json"
    bad.write_text('[{"prompt": "a", "response": "b"},\n {"prompt": ', encoding="utf-8")
    at = import_path(open_page(), bad)
    assert not at.exception
    assert re.search(r"Import failed.*broken\.json: malformed JSON at line 2", errors(at))
    assert snapshot(demo_ws) == before
    assert set(dataset_list(at)["name"]) == set(before)  # the page goes on: list and browser still there
    assert browser_table(at).shape[0] > 0


def test_wrong_mapping_and_name_clash_are_errors(demo_ws, tmp_path):
    before = snapshot(demo_ws)
    good = tmp_path / "tiny.jsonl"
    good.write_text("\n".join(json.dumps({"q": f"question {i}", "r": f"<think>why {i}</think>answer {i}"})
                              for i in range(3)), encoding="utf-8")
    at = open_page()
    at.checkbox(key="ds_map_override").check().run()
    at.text_input(key="ds_map_prompt").input("question")  # no such column
    at = import_path(at, good)
    assert not at.exception
    assert "column 'question' (mapped to prompt) is not in the data" in errors(at)
    assert snapshot(demo_ws) == before
    # The right mapping imports; the same name again is refused unless "Replace" is ticked.
    at.text_input(key="ds_map_prompt").input("q")
    at.text_input(key="ds_map_response").input("r")
    at = import_path(at, good)
    assert not at.error, errors(at)
    assert DatasetStore(demo_ws).load("tiny")[["reasoning", "answer"]].iloc[2].tolist() == ["why 2", "answer 2"]
    at.text_input(key="ds_name").input(DEMO_GSM8K)
    at = import_path(at, good)
    assert f"a dataset named '{DEMO_GSM8K}' already exists" in errors(at)
    assert DatasetStore(demo_ws).info(DEMO_GSM8K).fingerprint == before[DEMO_GSM8K]


def test_unknown_hub_id_offline_is_an_error(demo_ws):
    before = snapshot(demo_ws)
    at = open_page()
    at.text_input(key="ds_hf_id").input("nobody-dgr-test/no-such-dataset").run()
    at = at.button(key="ds_import_hf").click().run()
    assert not at.exception
    assert "could not fetch Hugging Face dataset 'nobody-dgr-test/no-such-dataset' (offline mode" in errors(at)
    assert snapshot(demo_ws) == before


def test_regex_search_filters_and_a_bad_regex_is_an_error(demo_ws):
    at = open_page()
    at.text_input(key="ds_search").input(r"\bbomb|explosive")
    at.checkbox(key="ds_regex").check().run()
    assert not at.exception and not at.error
    prompts = DatasetStore(demo_ws).load(DEMO_EXTERNAL)["prompt"]
    expected = prompts[prompts.str.contains(r"\bbomb|explosive", case=False, regex=True)]
    assert 0 < len(expected) < len(prompts)
    assert browser_table(at)["prompt"].tolist() == expected.tolist()
    assert f"{len(expected)} of {len(prompts)} rows" in [c.value for c in at.caption]
    # The sample picker follows the filter.
    assert at.selectbox(key=f"ds_sample_{DatasetStore(demo_ws).info(DEMO_EXTERNAL).fingerprint}").options[0] \
        .startswith(DatasetStore(demo_ws).load(DEMO_EXTERNAL).loc[expected.index[0], "id"])
    at.text_input(key="ds_search").input("(unclosed").run()
    assert not at.exception
    assert "Search: invalid regular expression '(unclosed': missing ) at position 9" in errors(at)  # `regex`'s words
    assert len(browser_table(at)) == len(prompts)  # the error leaves the table unfiltered


def test_filters_sort_and_lengths_in_target_model_tokens(demo_ws, tmp_path):
    """A real Hugging Face tokenizer (a model folder holding only a tokenizer): lengths on the page equal the
    tokenizer's counts, and the length sort / reasoning filter use them."""
    from dgr_core.models.tiny import build_tokenizer

    folder = tmp_path / "tok-only"
    tok = build_tokenizer()
    tok.save_pretrained(folder)
    (folder / "config.json").write_text("{}")  # the tokenizer config names its class: no model type needed
    at = open_page(backend="hf", target_model=ModelSpec(str(folder)), ds_selected=DEMO_GSM8K)
    assert any(str(folder) in i.value for i in at.info)  # a typed path loads nothing until asked
    at = at.button(key="ds_load_tokenizer").click().run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    df = DatasetStore(demo_ws).load(DEMO_GSM8K)
    table = browser_table(at).set_index("id")
    expected = S.count_tokens(df["reasoning"].tolist(), tok)
    assert table.loc[df["id"], "reasoning_tokens"].tolist() == expected
    at.selectbox(key="ds_sort").select("reasoning_tokens")
    at.checkbox(key="ds_desc").check().run()
    assert browser_table(at)["reasoning_tokens"].tolist() == sorted(expected, reverse=True)
    at.selectbox(key="ds_has_reasoning").select("without reasoning").run()
    assert "0 of 100 rows" in [c.value for c in at.caption] and any("No rows match" in i.value for i in at.info)
    assert len(list((demo_ws.root / "stats" / "token_lengths").glob("*.parquet"))) == 1  # cached on disk


def test_stats_tab_draws_the_length_histogram(demo_ws):
    at = open_page()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    hist = next(c for c in charts if any(t.get("type") == "histogram" for t in c["data"]))
    assert {t["name"] for t in hist["data"]} == {"prompt", "reasoning", "answer"}
    assert len({t["bingroup"] for t in hist["data"]}) == 3  # own bins per segment: scales differ a lot
    summary = next(d.value for d in at.dataframe if "p90" in d.value.columns)
    assert summary["segment"].tolist() == ["prompt", "reasoning", "answer", "response"]


def test_score_action_submits_a_score_job(demo_ws):
    at = open_page(ds_selected=DEMO_GSM8K)
    at.button(key="ds_score").click().run()
    assert not at.exception and not at.error, errors(at)
    runs = manager.list_runs(demo_ws, "score")
    assert len(runs) == 1
    config = runs[0].spec["config"]
    assert config["dataset"] == DEMO_GSM8K and config["score"]["backend"] == "fake"
    assert config["score"]["model"]["ref"] == "demo" and config["score"]["max_length"] == 4096
    assert at.session_state[f"run:datasets-score-{DEMO_GSM8K}"] == str(runs[0].run_dir)
    state = manager.wait(runs[0].run_dir, 120)
    assert state["state"] == "done", state.get("error")
    result = runs[0].result_as(ScoreResult)
    assert result is not None and result.n == 100


def test_delete_needs_confirmation_and_removes_only_that_dataset(demo_ws):
    at = open_page(ds_selected=DEMO_GSM8K)
    assert at.button(key="ds_delete").disabled
    at.checkbox(key=f"ds_delete_confirm_{DEMO_GSM8K}").check().run()
    at.button(key="ds_delete").click().run()
    assert not at.exception
    assert set(snapshot(demo_ws)) == {DEMO_EXTERNAL}
    assert any(f"Deleted **{DEMO_GSM8K}**" in s.value for s in at.success)
    assert at.selectbox(key="ds_selected").options == [DEMO_EXTERNAL]
