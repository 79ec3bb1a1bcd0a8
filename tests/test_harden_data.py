"""Hardening of the data layer: compressed inputs, streamed multi-chunk imports, bad rows listed (and kept on
request), deep nesting and cut gzip as named errors, uploads that never overwrite each other, data roots."""

from __future__ import annotations

import gzip
import json
import os

import pandas as pd
import pytest

from dgr_core.data import hub, loaders
from dgr_core.data.loaders import load_file, load_file_report, load_upload, read_records
from dgr_core.data.store import DatasetStore, fingerprint
from dgr_core.errors import DataError
from dgr_core.security import check_import_path, data_roots
from dgr_core.workspace import Workspace

ROWS = [{"prompt": f"q{i}", "response": f"<think>r{i}</think>a{i}"} for i in range(7)]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.mark.parametrize("name", ["s.jsonl.gz", "s.json.gz", "s.csv.gz"])
def test_gzip_inputs_read_like_the_plain_file(tmp_path, name):
    frame = pd.DataFrame(ROWS)
    plain = {"s.jsonl.gz": jsonl(ROWS), "s.json.gz": json.dumps(ROWS).encode(),
             "s.csv.gz": frame.to_csv(index=False).encode()}[name]
    (tmp_path / name).write_bytes(gzip.compress(plain))
    (tmp_path / name.removesuffix(".gz")).write_bytes(plain)
    got, mapping = load_file(tmp_path / name)
    want, _ = load_file(tmp_path / name.removesuffix(".gz"))
    pd.testing.assert_frame_equal(got, want)
    assert got["id"].iloc[0] == "s-00000" and mapping.shape == "prompt_response"


def test_truncated_gzip_is_a_named_error(tmp_path):
    data = gzip.compress(jsonl(ROWS * 50))
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz: not a readable gzip file"):
        load_file(tmp_path / "cut.jsonl.gz")
    (tmp_path / "fake.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"fake\.json\.gz: not a readable gzip file"):
        load_file(tmp_path / "fake.json.gz")


@pytest.mark.parametrize("name", ["deep.json", "deep.jsonl"])
def test_deep_nesting_is_a_named_error_not_recursion(tmp_path, name):
    (tmp_path / name).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        load_file(tmp_path / name)


def test_every_bad_row_is_named_and_keep_good_keeps_the_rest(tmp_path):
    rows = [*ROWS[:2], {"prompt": 7, "response": "x"}, ROWS[3], {"prompt": None}, ROWS[5]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(jsonl(rows))
    with pytest.raises(DataError, match=r"2 of 6 records are unusable: record 3: prompt \(column 'prompt'\) is a "
                                        r"int.*; record 5: prompt is missing"):
        load_file(path)
    path.write_bytes(jsonl(rows)[:-1] + b"\n{broken\n")
    with pytest.raises(DataError, match=r"mixed\.jsonl: line 7 is not valid JSON"):  # a broken file, by default
        load_file(path)
    frame, _, bad = load_file_report(path, keep_good=True)
    assert frame["prompt"].tolist() == ["q0", "q1", "q3", "q5"]
    assert frame["id"].tolist() == ["mixed-00000", "mixed-00001", "mixed-00003", "mixed-00005"]  # place kept
    assert [b.record for b in bad] == [3, 5, 7]


def test_store_streams_many_chunks_with_mixed_types(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "CHUNK_ROWS", 3)
    import dgr_core.data.store as store_mod

    monkeypatch.setattr(store_mod, "CHUNK_ROWS", 3)
    rows = [{**r, "extra": i if i < 4 else f"t{i}", **({"late": True} if i == 6 else {})} for i, r in enumerate(ROWS)]
    path = tmp_path / "many.jsonl"
    path.write_bytes(jsonl(rows))
    store = DatasetStore(Workspace(tmp_path / "ws"))
    info = store.import_file(path)
    got = store.load("many")
    assert info.n_rows == 7 and got["id"].tolist() == [f"many-{i:05d}" for i in range(7)]
    assert got["extra"].tolist() == ["0", "1", "2", "3", "t4", "t5", "t6"]  # int in one chunk, text in another
    assert got["late"].tolist()[-1] is True and pd.isna(got["late"].tolist()[0])
    assert fingerprint(got) == info.fingerprint
    assert not [p for p in store.ws.datasets.iterdir() if p.name.startswith(".import")]


def test_store_keep_good_lists_bad_rows_in_meta(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps([ROWS[0], {"prompt": ["not", "text"]}, ROWS[2]]))
    store = DatasetStore(Workspace(tmp_path / "ws"))
    with pytest.raises(DataError, match=r"record 2: prompt \(column 'prompt'\) is a list"):
        store.import_file(path)
    assert not store.exists("k")
    info = store.import_file(path, keep_good=True)
    assert info.n_rows == 2 and info.extra["n_bad_rows"] == 1 and info.extra["bad_rows"][0]["record"] == 2


def test_uploads_of_one_name_never_overwrite(tmp_path):
    first = load_upload("same.jsonl", jsonl(ROWS[:1]), tmp_path)
    second = load_upload("same.jsonl", jsonl(ROWS[:2]), tmp_path)
    assert (first.name, second.name) == ("same.jsonl", "same-2.jsonl")
    assert len(read_records(first)) == 1 and len(read_records(second)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same-2.jsonl", "same.jsonl"]  # no temp files left


def test_import_path_is_limited_to_data_roots(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.json").write_text('[{"prompt": "secret"}]')
    (root / "ok.json").write_text('[{"prompt": "fine"}]')
    os.symlink(outside / "secret.json", root / "link.json")
    os.mkfifo(root / "pipe.json")
    monkeypatch.setenv("DGR_DATA_ROOTS", str(root))
    assert data_roots() == [root.resolve()]
    assert check_import_path(root / "ok.json") == (root / "ok.json").resolve()
    for bad, why in [(outside / "secret.json", "only from its data roots"), (root / "link.json", "data roots"),
                     (root / "pipe.json", "not a regular file"), (root / "nope.json", "file not found")]:
        with pytest.raises(DataError, match=why) as info:
            check_import_path(bad)
        assert "secret" not in str(info.value).replace("secret.json", "")  # never quotes what a file holds


def test_hub_ids_with_dot_dot_are_refused():
    with pytest.raises(DataError, match="not a Hugging Face dataset id"):
        hub.fetch_hf_records("owner/..")


def test_unsupported_and_extensionless_names(tmp_path):
    with pytest.raises(DataError, match="unsupported file type '.gz'"):
        load_upload("x.tar.gz", b"x", tmp_path)
    with pytest.raises(DataError, match="unsupported file type"):
        load_upload(".jsonl.gz", b"x", tmp_path)  # the leading dot goes: 'jsonl.gz' has no supported extension


def test_deep_nesting_inside_a_chat_column_is_a_named_error(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([{"messages": "[" * 5000 + "]" * 5000}]))
    with pytest.raises(DataError, match="nested too deeply"):
        load_file(path)
    with pytest.raises(DataError, match="nested too deeply"):
        DatasetStore(Workspace(tmp_path / "ws")).import_file(path)


@pytest.mark.parametrize("broken", ["model", "added_tokens", "garbage"])
def test_a_broken_tokenizer_is_a_model_load_error(tmp_path, tiny_model_dir, broken):
    import shutil

    from dgr_core.data.stats import load_tokenizer
    from dgr_core.errors import ModelLoadError
    from dgr_core.models.loading import ModelSpec, load_uncached

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    tok = folder / "tokenizer.json"
    if broken == "garbage":
        tok.write_text("{garbage")
    else:
        data = json.loads(tok.read_text())
        data.pop(broken)
        tok.write_text(json.dumps(data))
    for load in (lambda: load_tokenizer(ModelSpec(str(folder)), "hf"),
                 lambda: load_uncached(ModelSpec(str(folder), device="cpu"), Workspace(tmp_path / "ws"))):
        with pytest.raises(ModelLoadError, match="Could not load"):
            load()
