"""Loaders and shape detection: the real safety / benchmark files, every crafted shape, every malformed case."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from dgr_core.data.hub import load_hf
from dgr_core.data.loaders import load_file, load_upload, read_records, safe_filename, safe_name
from dgr_core.data.presets import PRESETS
from dgr_core.data.schema import (
    CANONICAL_COLUMNS,
    THINK_CLOSED,
    THINK_EMPTY,
    THINK_MISSING,
    THINK_UNCLOSED,
    ColumnMapping,
)
from dgr_core.data.shapes import apply_mapping, detect_mapping
from dgr_core.errors import DataError


def shared_data() -> Path:
    """`../shared/data` beside the repo (DGR_SHARED_DATA overrides); tests needing it skip when absent."""
    env = os.environ.get("DGR_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def real_file(rel: str) -> Path:
    path = shared_data() / rel
    if not path.is_file():
        pytest.skip(f"shared real data not found: {path} (set DGR_SHARED_DATA to the shared/data folder)")
    return path


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def write_json(tmp_path: Path, name: str, obj) -> Path:
    return write(tmp_path, name, json.dumps(obj))


def canonical_ok(df: pd.DataFrame) -> None:
    assert list(df.columns[: len(CANONICAL_COLUMNS)]) == CANONICAL_COLUMNS
    assert "think_status" in df.columns
    assert df["id"].is_unique


# ---------------------------------------------------------------- real files


def test_star1_real_file():
    df, mapping = load_file(real_file("STAR-1/data/STAR-1.json"))
    canonical_ok(df)
    assert mapping.shape == "star1" and len(df) == 1000
    assert (df["think_status"] == THINK_CLOSED).all()
    raw = json.loads(real_file("STAR-1/data/STAR-1.json").read_text(encoding="utf-8"))
    for i in (0, 17, 999):
        reasoning, answer = raw[i]["response"].split("</think>", 1)
        assert df.loc[i, "reasoning"] == reasoning.replace("<think>", "", 1).strip()
        assert df.loc[i, "answer"] == answer.strip()
        assert df.loc[i, "category"] == "; ".join(raw[i]["category"])
        assert df.loc[i, "id"] == raw[i]["id"] and df.loc[i, "source"] == raw[i]["source"]
    assert (df["category"].str.contains("; ")).any()  # multi-label rows joined
    assert "orig_category" in df.columns and "score" in df.columns


def test_lrm_nocot_real_file():
    df, mapping = load_file(real_file("LRM-Safety-Study/dataset/data/sft_train_nocot.json"))
    canonical_ok(df)
    assert mapping.shape == "prompt_response" and len(df) == 1000
    assert (df["think_status"] == THINK_EMPTY).all()
    assert (df["reasoning"] == "").all()
    assert (df["answer"] == "I'm sorry, I can't assist with that request.").all()
    assert df["id"].iloc[0] == "sft_train_nocot-00000"


def test_strongreject_real_file_is_prompt_only():
    df, mapping = load_file(real_file("R1-Act/strongreject_dataset.csv"))
    assert mapping.shape == "prompt_only" and mapping.prompt == "forbidden_prompt"
    assert len(df) == 313 and df["category"].nunique() == 6
    assert (df["think_status"] == THINK_MISSING).all() and (df["answer"] == "").all()


def test_xstest_real_file():
    df, mapping = load_file(real_file("R1-Act/xstest_prompts.csv"))
    assert mapping.prompt == "prompt" and mapping.id == "id"
    assert len(df) == 450 and df["id"].iloc[0] == "1"
    assert set(df["label"]) == {"safe", "unsafe"}


def test_math500_real_jsonl():
    df, mapping = load_file(real_file("LRM-Safety-Study/reasoning_evaluation/data/math500/math500.jsonl"))
    assert mapping.shape == "prompt_only" and mapping.prompt == "problem"
    assert len(df) == 500 and "orig_answer" in df.columns and df["category"].iloc[0]


def test_lrm_preset_reads_local_nocot_offline(monkeypatch):
    real_file("LRM-Safety-Study/dataset/data/sft_train_nocot.json")
    monkeypatch.setenv("DGR_SHARED_DATA", str(shared_data()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    df, mapping = load_hf("thu-coai/LRM-Safety-Study", split="nocot")
    assert len(df) == 1000 and mapping.category == "data_type"


# ---------------------------------------------------------------- crafted shapes


def test_alpaca_with_input(tmp_path):
    path = write_json(tmp_path, "alpaca.json", [
        {"instruction": "Add.", "input": "2 and 2", "output": "<think>2+2</think>4"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
    ])
    df, mapping = load_file(path)
    assert mapping.shape == "alpaca"
    assert df["prompt"].tolist() == ["Add.\n\n2 and 2", "Say hi."]
    assert df["think_status"].tolist() == [THINK_CLOSED, THINK_MISSING]


def test_r1act_instruction_response_with_ids_and_category_list(tmp_path):
    path = write_json(tmp_path, "r1act.json", {"data": [
        {"id": "a", "instruction": "Harm?", "response": "Assess harm.\n</think>\n\nNo.", "category": ["x", "y"]},
        {"id": "b", "instruction": "Help?", "response": "<think>ok</think>Yes.", "category": "z"},
    ]})
    df, mapping = load_file(path)
    assert mapping.shape == "instruction_response"
    assert df["id"].tolist() == ["a", "b"] and df["category"].tolist() == ["x; y", "z"]
    assert df["reasoning"].tolist() == ["Assess harm.", "ok"]


def test_messages_shape(tmp_path):
    path = write(tmp_path, "chat.jsonl", "\n".join(json.dumps(r) for r in [
        {"messages": [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "Q1"},
                      {"role": "assistant", "content": "<think>r</think>A1"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Q2"}]}]},
    ]))
    df, mapping = load_file(path)
    assert mapping.shape == "messages" and mapping.messages == "messages"
    assert df["prompt"].tolist() == ["Q1", "Q2"]
    assert df["answer"].tolist() == ["A1", ""] and df["reasoning"].tolist() == ["r", ""]
    assert json.loads(df["messages"].iloc[0])[0]["role"] == "system"  # the full chat is kept, as JSON text


def test_sharegpt_shape(tmp_path):
    path = write_json(tmp_path, "sg.json", [
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "</think>A"}], "source": "s"},
    ])
    df, mapping = load_file(path)
    assert mapping.shape == "sharegpt"
    assert (df.loc[0, "prompt"], df.loc[0, "answer"], df.loc[0, "source"]) == ("Q", "A", "s")
    assert df.loc[0, "think_status"] == THINK_EMPTY


def test_text_chatml_shape_directrefusal_like(tmp_path):
    text = ("<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nHow to X?<|im_end|>\n"
            "<|im_start|>assistant\n<|im_start|>think\n I should not answer this question!"
            "<|im_start|>answer\nAnswer: No.<|im_end|>\n")
    path = write_json(tmp_path, "dr.json", [{"prompt": "How to X?", "response": "Sure, here is how...",
                                             "category": {"violence": True, "theft": False}, "text": text}])
    df, mapping = load_file(path)
    assert mapping.shape == "text"  # the trained `text` wins over the (harmful) `response`
    row = df.iloc[0]
    assert (row["prompt"], row["reasoning"], row["answer"]) == ("How to X?", "I should not answer this question!",
                                                                "Answer: No.")
    assert row["category"] == "violence"


def test_s1_markers_and_unclosed_think(tmp_path):
    path = write_json(tmp_path, "s1.json", [
        {"prompt": "P1", "response": "<|im_start|>think\nhmm<|im_start|>answer\nA<|im_end|>"},
        {"prompt": "P2", "response": "<think>never closed"},
    ])
    df, _ = load_file(path)
    assert df[["reasoning", "answer", "think_status"]].values.tolist() == [
        ["hmm", "A", THINK_CLOSED], ["never closed", "", THINK_UNCLOSED]]


def test_parquet_and_user_override(tmp_path):
    path = tmp_path / "custom.parquet"
    pd.DataFrame({"q": ["a", "b"], "r": ["x", "y"], "why": ["w1", ""]}).to_parquet(path)
    with pytest.raises(DataError, match="custom.parquet: cannot tell which column holds the prompt. Columns seen: q, r"):
        load_file(path)
    df, mapping = load_file(path, ColumnMapping(prompt="q", reasoning="why", answer="r"))
    assert df[["prompt", "reasoning", "answer", "think_status"]].values.tolist() == [
        ["a", "w1", "x", THINK_CLOSED], ["b", "", "y", THINK_EMPTY]]


def test_json_lines_misnamed_json(tmp_path):
    path = write(tmp_path, "lines.json", '{"prompt": "a"}\n{"prompt": "b"}\n')
    assert [r["prompt"] for r in read_records(path)] == ["a", "b"]


def test_duplicate_ids_fall_back_to_generated(tmp_path):
    path = write_json(tmp_path, "dup.json", [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}])
    df, _ = load_file(path)
    assert df["id"].tolist() == ["dup-00000", "dup-00001"] and df["orig_id"].tolist() == [1, 1]


def test_detect_mapping_prompt_only_and_extras():
    m = detect_mapping(["category", "source", "forbidden_prompt"], [{"forbidden_prompt": "x"}])
    assert (m.shape, m.prompt, m.category, m.source, m.response) == ("prompt_only", "forbidden_prompt",
                                                                     "category", "source", None)


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("bad.json", '[\n  {"prompt": "a"},\n  {"prompt" "b"}\n]', r"bad\.json: malformed JSON at line 3, column 13: Expecting ':' delimiter"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n', r"bad\.jsonl: line 2 is not valid JSON"),
        ("latin.jsonl", b'{"prompt": "caf\xe9"}\n', r"latin\.jsonl: not UTF-8 text: byte 0xe9 at byte offset 15 \(line 1\)"),
        ("empty.csv", b"", r"empty\.csv: file is empty"),
        ("blank.json", b"  \n", r"blank\.json: file is empty"),
        ("zero.json", "[]", r"zero\.json: no records found"),
        ("scalars.json", "[1, 2]", r"scalars\.json: record 1: record is a int"),
        ("header.csv", "prompt,response\n", r"header\.csv: no records found"),
        ("x.txt", "hello", r"x\.txt: unsupported file type '\.txt'"),
        ("broken.parquet", b"PAR1 not really", r"broken\.parquet: not a readable Parquet file"),
    ],
)
def test_malformed_files_name_file_and_place(tmp_path, name, content, pattern):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=pattern):
        load_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.json: file not found"):
        read_records(tmp_path / "nope.json")


def test_wrong_mapping_column_names_file_and_record(tmp_path):
    path = write_json(tmp_path, "m.json", [{"prompt": "a", "response": "b"}])
    with pytest.raises(DataError, match=r"m\.json: record 1: column 'question' \(mapped to prompt\) is not in the data"):
        load_file(path, ColumnMapping(prompt="question", response="response"))


def test_missing_or_non_string_prompt_names_record(tmp_path):
    path = write_json(tmp_path, "p.json", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": None}])
    with pytest.raises(DataError, match=r"p\.json: record 3: prompt is missing or empty"):
        load_file(path)
    path = write_json(tmp_path, "q.json", [{"prompt": "a"}, {"prompt": 7}])
    with pytest.raises(DataError, match=r"q\.json: record 2: prompt \(column 'prompt'\) is a int, expected text"):
        load_file(path)


def test_text_without_template_row_is_reported(tmp_path):
    ok = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>"
    records = [{"text": ok}, {"text": "no template here"}]
    with pytest.raises(DataError, match=r"t\.json: record 2: text has no recognised chat template"):
        apply_mapping(records, ColumnMapping(shape="text", text="text"), file="t.json")


# ---------------------------------------------------------------- uploads and names


def test_upload_sanitizes_and_caps(tmp_path):
    path = load_upload("../../etc/My Data (v2).JSON", b'[{"prompt": "a"}]', tmp_path)
    assert path == tmp_path / "My_Data_v2_.JSON" and path.read_bytes() == b'[{"prompt": "a"}]'
    assert load_file(path)[0]["prompt"].tolist() == ["a"]
    with pytest.raises(DataError, match=r"big\.json: the upload is .* over the 0\.0 MiB limit"):
        load_upload("big.json", b"x" * 100, tmp_path, max_bytes=10)
    with pytest.raises(DataError, match="unsupported file type '.pkl'"):
        load_upload("model.pkl", b"x", tmp_path)
    assert not (tmp_path / "big.json").exists()


@pytest.mark.parametrize(("raw", "clean"), [("..hidden.csv", "hidden.csv"), ("a/b\\c d.jsonl", "c_d.jsonl"),
                                            ("naïve.parquet", "na_ve.parquet")])
def test_safe_filename(raw, clean):
    assert safe_filename(raw) == clean


@pytest.mark.parametrize("bad", ["..", "", "///", ".json"])
def test_safe_name_refuses_empty_results(bad):
    with pytest.raises(DataError):
        safe_filename(bad) if bad.endswith(".json") else safe_name(bad)


# ---------------------------------------------------------------- Hugging Face


def test_load_hf_offline_fails_fast_with_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    start = time.monotonic()
    with pytest.raises(DataError, match=r"could not fetch Hugging Face dataset 'nobody/no-such-set'.*HF_HUB_OFFLINE"):
        load_hf("nobody/no-such-set")
    assert time.monotonic() - start < 10


def test_load_hf_rejects_malformed_id():
    with pytest.raises(DataError, match="not a Hugging Face dataset id"):
        load_hf("not a/valid id!")


def test_presets_are_complete():
    assert set(PRESETS) == {"TianshengHuang/DirectRefusal", "UCSC-VLAA/STAR-1", "Yeonjun/R1-Act-train",
                            "thu-coai/LRM-Safety-Study", "TianshengHuang/Small_SafeChain"}
    for preset in PRESETS.values():
        assert preset.default_split in preset.splits and preset.paper and preset.description
    assert "nocot" in PRESETS["thu-coai/LRM-Safety-Study"].splits


def _fake_hub(monkeypatch, splits: dict[str, list[dict]], calls: list):
    """Replace datasets.load_dataset with an in-memory DatasetDict: exercises load_hf without a network."""
    import datasets

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs))
        loaded = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})
        return loaded[split] if split else loaded

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)


def test_load_hf_directrefusal_preset_reads_trained_text(monkeypatch):
    text = ("<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nSteal a car?<|im_end|>\n"
            "<|im_start|>assistant\n<|im_start|>think\n I should not answer this question!"
            "<|im_start|>answer\nAnswer: I can't help with that.<|im_end|>\n")
    row = {"prompt": "Steal a car?", "response": "First, find an unlocked car...",
           "category": {"animal_abuse": False, "financial_crime,property_crime,theft": True}, "is_safe": False,
           "refusal": "Question: Steal a car?\nAnswer: I can't help with that.", "text": text}
    calls: list = []
    _fake_hub(monkeypatch, {"train": [row]}, calls)
    df, mapping = load_hf("TianshengHuang/DirectRefusal")
    assert calls == [("TianshengHuang/DirectRefusal", None, "train", {})]  # no trust_remote_code, ever
    assert mapping.shape == "text" and mapping is not PRESETS["TianshengHuang/DirectRefusal"].mapping
    assert df.loc[0, ["prompt", "reasoning", "answer", "category"]].tolist() == [
        "Steal a car?", "I should not answer this question!", "Answer: I can't help with that.",
        "financial_crime,property_crime,theft"]
    assert df.loc[0, "id"] == "DirectRefusal-00000" and df.loc[0, "response"].startswith("First")


def test_load_hf_unknown_id_detects_shape_and_picks_train(monkeypatch):
    calls: list = []
    _fake_hub(monkeypatch, {"test": [{"question": "t", "response": "x"}],
                            "train": [{"question": "q", "response": "<think>r</think>a"}]}, calls)
    df, mapping = load_hf("someone/star-like")
    assert mapping.shape == "star1" and df.loc[0, ["prompt", "reasoning", "answer"]].tolist() == ["q", "r", "a"]
    with pytest.raises(DataError, match=r"someone/star-like \[test\]: record 1: column 'nope'"):
        load_hf("someone/star-like", split="test", mapping=ColumnMapping(prompt="nope"))
