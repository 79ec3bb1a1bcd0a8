"""dgr_core.data.stats: token lengths (batched = one by one, cached per fingerprint + tokenizer), summaries, and
the browser's search / filters / sort as pure pandas, with bad input raising SearchError."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dgr_core.data import stats as S
from dgr_core.data.schema import THINK_STATUSES, DatasetInfo
from dgr_core.data.store import DatasetStore, fingerprint
from dgr_core.errors import DGRError, ModelLoadError
from dgr_core.models.loading import ModelSpec, tokenizer_hash


@pytest.fixture(scope="module")
def hf_tok():
    from dgr_core.models.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def tok_folder(tmp_path_factory, hf_tok):
    """A model folder with only a tokenizer and a config.json: enough for `load_tokenizer`."""
    folder = tmp_path_factory.mktemp("tokonly") / "tiny-tok"
    hf_tok.save_pretrained(folder)
    (folder / "config.json").write_text("{}")  # the tokenizer config names its class: no model type needed
    return folder


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "prompt": ["How to make a Bomb?", "What is 2+2?", "Tell me a joke", "Hack a bank (now)"],
        "reasoning": ["I should not answer this question!", "2+2 = 4. Simple arithmetic.", "", "   "],
        "answer": ["I'm sorry, but I can't assist.", "The answer is 4.", "Why did the chicken…", "No."],
        "source": ["SR", "GSM8K", "SR", "XS"],
        "category": ["Violence; Weapons", "math", "", "Cyber; Violence"],
        "think_status": ["closed", "closed", "missing", "empty"],
    })


def lengths_frame(frame: pd.DataFrame, response: list[int]) -> pd.DataFrame:
    """A table with made-up length columns (response = reasoning + answer as token_lengths makes it)."""
    out = frame.copy()
    out["prompt_tokens"] = [5, 6, 7, 8]
    out["reasoning_tokens"] = [r - 1 for r in response]
    out["answer_tokens"] = 1
    out["response_tokens"] = response
    return out


# ---------------------------------------------------------------- token lengths


def test_count_tokens_batched_equals_one_by_one(hf_tok, frame):
    texts = frame["reasoning"].tolist() + frame["answer"].tolist() + ["Café naïve 日本語 🙂"]
    expected = [len(hf_tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert S.count_tokens(texts, hf_tok) == expected
    assert expected[2] == 0 and expected[0] > 3  # the empty reasoning counts 0, text counts its tokens


def test_count_tokens_batches_large_inputs(hf_tok, monkeypatch):
    monkeypatch.setattr(S, "BATCH", 3)
    texts = [f"The answer is {i}." * (i % 4) for i in range(10)]
    assert S.count_tokens(texts, hf_tok) == [len(hf_tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def test_token_lengths_per_segment_and_response_sum(hf_tok, frame):
    lengths = S.token_lengths(frame.set_axis([10, 11, 12, 13]), hf_tok)
    assert list(lengths.columns) == ["id", *S.LENGTH_COLUMNS]
    assert list(lengths.index) == [10, 11, 12, 13]
    assert (lengths["response_tokens"] == lengths["reasoning_tokens"] + lengths["answer_tokens"]).all()
    for segment in S.SEGMENTS:
        assert lengths[f"{segment}_tokens"].tolist() == S.count_tokens(frame[segment].tolist(), hf_tok)


def test_fake_tokenizer_counts_words_and_punctuation(frame):
    tok = S.load_tokenizer(ModelSpec("demo"), "fake", None)
    assert tok.hash == "fake-v1" and S.tokenizer_fingerprint(tok.tokenizer) == "fake-v1"
    assert S.count_tokens(["What is 2+2?", ""], tok.tokenizer) == [len(["What", " ", "is", " ", "2", "+", "2", "?"]), 0]


def test_load_tokenizer_from_a_folder_loads_no_model(tok_folder, hf_tok):
    tok = S.load_tokenizer(ModelSpec(str(tok_folder)), "hf", None)
    assert tok.hash == tokenizer_hash(tok.tokenizer)
    assert S.count_tokens(["The answer is 42."], tok.tokenizer) == S.count_tokens(["The answer is 42."], hf_tok)


def test_load_tokenizer_missing_folder_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        S.load_tokenizer(ModelSpec(str(tmp_path / "nope")), "hf", None)


def test_cached_lengths_written_once_and_keyed_by_fingerprint_and_tokenizer(ws, frame, hf_tok, monkeypatch):
    tok = S.TokenizerRef(hf_tok, tokenizer_hash(hf_tok), "tiny")
    fp = fingerprint(frame)
    first = S.cached_token_lengths(ws, frame, fp, tok, dataset="toy")
    path = S.lengths_path(ws, fp, tok.hash)
    assert path.is_file() and path.parent == ws.root / "stats" / "token_lengths"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert (meta["fingerprint"], meta["tokenizer_hash"], meta["dataset"], meta["n_rows"]) == (fp, tok.hash, "toy", 4)

    def boom(*_a, **_k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(S, "token_lengths", boom)
    pd.testing.assert_frame_equal(S.cached_token_lengths(ws, frame, fp, tok), first)
    # Another fingerprint or another tokenizer is another cache entry.
    assert S.lengths_path(ws, "0" * 16, tok.hash) != path
    assert S.lengths_path(ws, fp, "fake-v1") != path
    with pytest.raises(AssertionError, match="recomputed"):
        S.cached_token_lengths(ws, frame, fp, S.TokenizerRef(hf_tok, "other-hash", "tiny"))


def test_cached_lengths_recomputed_when_broken_or_for_other_rows(ws, frame, hf_tok):
    tok = S.TokenizerRef(hf_tok, tokenizer_hash(hf_tok), "tiny")
    fp = fingerprint(frame)
    good = S.cached_token_lengths(ws, frame, fp, tok)
    path = S.lengths_path(ws, fp, tok.hash)
    path.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(S.cached_token_lengths(ws, frame, fp, tok), good)
    # A cache file whose ids do not match the table (e.g. a hand-edited dataset) is not trusted.
    other = frame.assign(id=["w", "x", "y", "z"])
    again = S.cached_token_lengths(ws, other, fp, tok)
    assert again["id"].tolist() == ["w", "x", "y", "z"]


def test_dataset_lengths_of_a_stored_dataset(ws, frame):
    DatasetStore(ws).save("toy", frame, origin="test")
    tok = S.load_tokenizer(ModelSpec("demo"), "fake", ws)
    lengths = S.dataset_lengths(ws, "toy", tok)
    assert lengths["id"].tolist() == ["a", "b", "c", "d"]
    table = S.with_lengths(frame, lengths)
    assert table["reasoning_tokens"].tolist()[2] == 0 and table["prompt_tokens"].gt(0).all()
    with pytest.raises(S.SearchError, match="rows"):
        S.with_lengths(frame.head(2), lengths)
    assert S.with_lengths(frame, None) is frame


# ---------------------------------------------------------------- summaries


def test_length_summary_and_long_form(frame):
    table = lengths_frame(frame, [1, 3, 5, 11])
    summary = S.length_summary(table).set_index("segment")
    assert list(summary.index) == ["prompt", "reasoning", "answer", "response"]
    row = summary.loc["response"]
    assert (row["samples"], row["mean"], row["median"], row["max"], row["total"]) == (4, 5.0, 4.0, 11, 20)
    assert summary.loc["reasoning", "empty"] == 1  # 1 - 1 = 0 tokens
    long = S.lengths_long(table)
    assert len(long) == 12 and set(long["segment"]) == {"prompt", "reasoning", "answer"}
    assert long.query("id == 'd' and segment == 'prompt'")["tokens"].item() == 8
    assert S.length_summary(frame).empty  # no lengths, no rows


def test_labels_counts_and_options(frame):
    assert S.split_labels("Violence; Weapons") == ["Violence", "Weapons"]
    assert S.split_labels(None) == [] and S.split_labels(float("nan")) == []
    assert S.label_options(frame["category"]) == ["Cyber", "Violence", "Weapons", "math"]
    counts = S.label_counts(frame["category"]).set_index("label")["count"].to_dict()
    assert counts == {"Violence": 2, "Weapons": 1, "math": 1, "(none)": 1, "Cyber": 1}


def test_datasets_table_has_think_counts_per_status():
    info = DatasetInfo(name="x", fingerprint="f" * 16, n_rows=3, origin="test",
                       think_counts={"closed": 2, "missing": 1})
    table = S.datasets_table([info])
    assert table.loc[0, ["name", "rows", "fingerprint", "origin"]].tolist() == ["x", 3, "f" * 16, "test"]
    assert table.loc[0, ["think closed", "think unclosed", "think missing", "think empty"]].tolist() == [2, 0, 1, 0]
    assert list(S.datasets_table([]).columns) == list(table.columns)
    assert set(S.THINK_STATUS_HELP) == set(THINK_STATUSES)


# ---------------------------------------------------------------- search, filters, sort


def ids(df: pd.DataFrame) -> list[str]:
    return df["id"].tolist()


def test_plain_search_is_literal_and_case_insensitive_by_default(frame):
    assert ids(S.browse(frame, S.BrowseQuery(text="bomb"))) == ["a"]
    assert ids(S.browse(frame, S.BrowseQuery(text="bomb", case_sensitive=True))) == []
    assert ids(S.browse(frame, S.BrowseQuery(text="2+2"))) == ["b"]  # '+' is not a regex operator here
    assert ids(S.browse(frame, S.BrowseQuery(text="(now)"))) == ["d"]
    assert ids(S.browse(frame, S.BrowseQuery(text=""))) == ["a", "b", "c", "d"]


def test_regex_search_and_fields(frame):
    assert ids(S.browse(frame, S.BrowseQuery(text=r"bomb|bank", regex=True))) == ["a", "d"]
    assert ids(S.browse(frame, S.BrowseQuery(text=r"^I('m| should)", regex=True))) == ["a"]
    assert ids(S.browse(frame, S.BrowseQuery(text="answer", fields=["answer"]))) == ["b"]
    assert ids(S.browse(frame, S.BrowseQuery(text="answer", fields=["reasoning"]))) == ["a"]
    assert ids(S.browse(frame, S.BrowseQuery(text=r"(?=.*2)\d\+", regex=True))) == ["b"]  # Python re semantics


@pytest.mark.parametrize("pattern", ["(unclosed", "[a-", "*start", "a{2,1}"])
def test_bad_regex_raises_search_error_with_position(frame, pattern):
    with pytest.raises(S.SearchError, match=r"invalid regular expression .* at position \d+") as info:
        S.browse(frame, S.BrowseQuery(text=pattern, regex=True))
    assert isinstance(info.value, DGRError)
    assert ids(S.browse(frame, S.BrowseQuery(text=pattern))) == []  # the same text searched literally is fine


def test_unknown_search_field_raises(frame):
    with pytest.raises(S.SearchError, match="cannot search in nope"):
        S.search_mask(frame, "x", fields=["nope"])
    with pytest.raises(S.SearchError, match="no field"):
        S.search_mask(frame, "x", fields=[])


def test_filters_combine(frame):
    assert ids(S.browse(frame, S.BrowseQuery(sources=["SR"]))) == ["a", "c"]
    assert ids(S.browse(frame, S.BrowseQuery(categories=["Violence"]))) == ["a", "d"]  # any of a row's labels
    assert ids(S.browse(frame, S.BrowseQuery(categories=["Weapons", "math"]))) == ["a", "b"]
    assert ids(S.browse(frame, S.BrowseQuery(has_reasoning=True))) == ["a", "b"]  # whitespace is no reasoning
    assert ids(S.browse(frame, S.BrowseQuery(has_reasoning=False))) == ["c", "d"]
    assert ids(S.browse(frame, S.BrowseQuery(think_statuses=["missing", "empty"]))) == ["c", "d"]
    assert ids(S.browse(frame, S.BrowseQuery(sources=["SR"], has_reasoning=True, text="sorry"))) == ["a"]


def test_length_range_is_inclusive_and_needs_lengths(frame):
    table = lengths_frame(frame, [1, 3, 5, 11])
    assert ids(S.browse(table, S.BrowseQuery(min_tokens=3, max_tokens=5))) == ["b", "c"]
    assert ids(S.browse(table, S.BrowseQuery(min_tokens=6))) == ["d"]
    assert ids(S.browse(table, S.BrowseQuery(max_tokens=2, length_column="reasoning_tokens"))) == ["a", "b"]
    with pytest.raises(S.SearchError, match="no token lengths"):
        S.browse(frame, S.BrowseQuery(min_tokens=1))


def test_sort_is_stable_and_keeps_the_index(frame):
    table = lengths_frame(frame, [5, 3, 5, 11])
    view = S.browse(table, S.BrowseQuery(sort_by="response_tokens", descending=True))
    assert ids(view) == ["d", "a", "c", "b"] and list(view.index) == [3, 0, 2, 1]
    assert ids(S.browse(table, S.BrowseQuery(sort_by="response_tokens"))) == ["b", "a", "c", "d"]
    assert ids(S.browse(table, S.BrowseQuery(sort_by="source"))) == ["b", "a", "c", "d"]
    with pytest.raises(S.SearchError, match="cannot sort by 'nope'"):
        S.browse(table, S.BrowseQuery(sort_by="nope"))


def test_browse_query_round_trips_json():
    q = S.BrowseQuery(text="x|y", regex=True, sources=["SR"], min_tokens=3, has_reasoning=False, sort_by="id")
    assert S.BrowseQuery.from_dict(json.loads(json.dumps(q.to_dict()))) == q
