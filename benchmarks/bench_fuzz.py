"""Fuzz: malformed files and broken model folders through the loaders, the store and every page: 0 raw tracebacks.

Every case must end either fine or in a named error (a `DGRError` subclass, shown as a message); anything else (a
RecursionError, a KeyError, a pyarrow or gzip exception escaping) is a raw traceback and is counted as a failure.

- files: deep nesting, huge rows, wrong types, binary garbage under every extension, cut / fake gzip, bad UTF-8,
  broken CSV and Parquet, odd JSON documents. Each goes through `load_file`, `load_file_report(keep_good=True)`,
  `DatasetStore.import_file` (both modes) and the Datasets page's path import (AppTest; `st.exception` is a
  raw traceback on the page);
- model folders: empty, garbage config, garbage / incomplete tokenizer.json (KeyError in transformers), garbage
  tokenizer_config.json, garbage weights. Each goes through `load_tokenizer`, `load_model` and every page of the app
  (AppTest, the folder as the sidebar's target model, backend hf, with the Datasets page's tokenizer button
  clicked).

    python benchmarks/bench_fuzz.py            # writes benchmarks/results_fuzz.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from _workspace import fresh_workspace  # noqa: E402

from dgr_core.errors import DGRError  # noqa: E402

GOOD = {"prompt": "How do I pick a lock?", "response": "<think>Risky.</think>I can't help."}


def jl(*rows: Any) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def parquet_bytes(table_dict: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(table_dict), sink)
    return sink.getvalue().to_pybytes()


def file_cases() -> dict[str, bytes]:
    rng = random.Random(0)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    good_jsonl = jl(*[GOOD] * 50)
    good_parquet = parquet_bytes({"prompt": ["a", "b"], "response": ["x", "y"]})
    cases = {
        "deep-list.json": b"[" * 100_000 + b"]" * 100_000,
        "deep-object.json": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "deep-in-row.jsonl": b'{"prompt": "q", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
        "deep-in-chat.json": json.dumps([{"messages": "[" * 5000 + "]" * 5000}]).encode(),
        "huge-row.jsonl": jl({"prompt": "x" * 30_000_000, "response": "y"}),
        "many-columns.jsonl": jl({**GOOD, **{f"c{i}": i for i in range(2_000)}}),
        "long-key.json": json.dumps([{**GOOD, "k" * 1_000_000: 1}]).encode(),
        "huge-number.json": b'[{"prompt": 1e999999, "response": "x"}]',
        "nan.json": b'[{"prompt": NaN, "response": Infinity}]',
        "prompt-int.jsonl": jl(GOOD, {"prompt": 7, "response": "x"}),
        "prompt-list.jsonl": jl(GOOD, {"prompt": ["a"], "response": "x"}),
        "prompt-dict.json": json.dumps([GOOD, {"prompt": {"a": 1}, "response": "x"}]).encode(),
        "prompt-bool.csv": b"prompt,response\ntrue,x\n",
        "response-int.jsonl": jl(GOOD, {"prompt": "q", "response": 5}),
        "messages-wrong.jsonl": jl({"messages": 5}, {"messages": [{"role": 1}]}, {"messages": "not json ["}),
        "text-wrong.jsonl": jl({"text": 5}, {"text": "<|im_start|>user\nq"}),
        "category-odd.jsonl": jl({**GOOD, "category": {"a": [1, {"b": None}]}}),
        "scalar.json": b"42", "string.json": b'"text"', "null.json": b"null", "empty-object.json": b"{}",
        "wrapper-scalar.json": b'{"data": 5}', "two-lists.json": b'{"a": [1], "b": [2]}',
        "list-of-scalars.jsonl": b"1\n2\n", "list-of-lists.json": b"[[1, 2], [3]]",
        "duplicate-keys.json": b'[{"prompt": "a", "prompt": "b", "response": "c"}]',
        "empty.jsonl": b"", "blank.json": b"  \n\n", "newlines.jsonl": b"\n\n\n",
        "bom.jsonl": b"\xef\xbb\xbf" + good_jsonl, "utf16.json": json.dumps([GOOD]).encode("utf-16"),
        "latin1.jsonl": '{"prompt": "café", "response": "x"}\n'.encode("latin-1"),
        "nul-bytes.jsonl": b'{"prompt": "a\x00b", "response": "x"}\n\x00\x00\n',
        "one-bad-line.jsonl": jl(GOOD) + b"{broken\n" + jl(GOOD),
        "csv-ragged.csv": b"prompt,response\na,b,c,d\ne\n", "csv-quote.csv": b'prompt,response\n"unclosed,b\n',
        "csv-header-only.csv": b"prompt,response\n", "csv-no-prompt.csv": b"x,y\n1,2\n",
        "csv-wide.csv": (",".join(f"c{i}" for i in range(2000)) + "\n" + ",".join("1" * 2000) + "\n").encode(),
        "parquet-magic-only.parquet": b"PAR1 not really PAR1", "parquet-cut.parquet": good_parquet[: len(good_parquet) // 2],
        "parquet-int-prompt.parquet": parquet_bytes({"prompt": [1, 2], "response": ["x", "y"]}),
        "parquet-struct.parquet": parquet_bytes({"prompt": [{"a": 1}], "response": [[1, 2]]}),
        "parquet-no-rows.parquet": parquet_bytes({"prompt": [], "response": []}),
        "gz-cut.jsonl.gz": gzip.compress(good_jsonl * 20)[:300], "gz-fake.json.gz": b"not gzip",
        "gz-of-garbage.jsonl.gz": gzip.compress(garbage), "gz-empty.csv.gz": gzip.compress(b""),
        "gz-of-deep.json.gz": gzip.compress(b"[" * 100_000 + b"]" * 100_000),
        "gz-of-zeros.jsonl.gz": gzip.compress(b"\x00" * 20_000_000),
        "gz-good.jsonl.gz": gzip.compress(good_jsonl),
    }
    for ext in (".json", ".jsonl", ".csv", ".parquet", ".json.gz", ".jsonl.gz", ".csv.gz"):
        cases[f"binary{ext}"] = garbage
    return cases


def model_cases(base: Path, root: Path) -> dict[str, Path]:
    """Broken copies of a working tiny model folder."""
    def variant(name: str, change: Callable[[Path], None]) -> Path:
        folder = root / name
        shutil.copytree(base, folder)
        change(folder)
        return folder

    def tokenizer_without(key: str) -> Callable[[Path], None]:
        def change(folder: Path) -> None:
            data = json.loads((folder / "tokenizer.json").read_text())
            data.pop(key, None)
            (folder / "tokenizer.json").write_text(json.dumps(data))
        return change

    empty = root / "empty"
    empty.mkdir()
    return {
        "empty folder": empty,
        "config.json garbage": variant("bad-config", lambda f: (f / "config.json").write_bytes(b"\x00{not json")),
        "config.json unknown model_type": variant("odd-type", lambda f: (f / "config.json").write_text(
            json.dumps({"model_type": "no-such-architecture"}))),
        "tokenizer.json garbage": variant("bad-tok", lambda f: (f / "tokenizer.json").write_text("{garbage")),
        "tokenizer.json without model": variant("tok-no-model", tokenizer_without("model")),
        "tokenizer.json without added_tokens": variant("tok-no-added", tokenizer_without("added_tokens")),
        "tokenizer_config.json garbage": variant("bad-tokcfg", lambda f: (f / "tokenizer_config.json").write_text("[")),
        "weights garbage": variant("bad-weights", lambda f: (f / "model.safetensors").write_bytes(b"\x07" * 1000)),
        "no tokenizer files": variant("no-tok", lambda f: [p.unlink() for p in f.glob("tokenizer*")]),
    }


def classify(fn: Callable[[], Any]) -> str:
    """'ok', 'named: <Type>' or 'RAW: <Type>: message'."""
    try:
        fn()
    except DGRError as exc:
        return f"named: {type(exc).__name__}"
    except BaseException as exc:  # noqa: BLE001 - exactly what this benchmark looks for
        return f"RAW: {type(exc).__name__}: {str(exc)[:80]}"
    return "ok"


def loader_checks(path: Path, home: Path) -> dict[str, str]:
    from dgr_core.data.loaders import load_file, load_file_report
    from dgr_core.data.store import DatasetStore
    from dgr_core.workspace import Workspace

    store = DatasetStore(Workspace(home))
    return {"load_file": classify(lambda: load_file(path)),
            "keep_good": classify(lambda: load_file_report(path, keep_good=True)),
            "store": classify(lambda: store.import_file(path, "fuzz", keep_good=False)),
            "store keep_good": classify(lambda: store.import_file(path, "fuzz2", keep_good=True))}


def page_outcome(at: Any) -> str:
    if at.exception:
        return "RAW: " + " / ".join(str(e.value)[:80] for e in at.exception)
    return "named: shown" if at.error or at.warning else "ok"


def data_page_import(at: Any, path: Path) -> str:
    at.text_input(key="ds_path").input(str(path)).run()
    at.button(key="ds_import_path").click().run()
    return page_outcome(at)


def run_files(root: Path, home: Path) -> list[tuple[str, dict[str, str]]]:
    from streamlit.testing.v1 import AppTest

    root.mkdir(parents=True, exist_ok=True)
    os.environ["DGR_DATA_ROOTS"] = str(root)
    at = AppTest.from_file(str(REPO / "views" / "data.py"), default_timeout=120)
    at.session_state["backend"] = "fake"
    at.run()
    at.checkbox(key="ds_replace").check().run()
    rows = []
    for name, data in file_cases().items():
        path = root / name
        path.write_bytes(data)
        checks = loader_checks(path, home)
        checks["Datasets page"] = data_page_import(at, path)
        rows.append((name, checks))
        print(name, checks, flush=True)
    return rows


def run_models(root: Path) -> list[tuple[str, dict[str, str]]]:
    from streamlit.testing.v1 import AppTest

    from dgr_core.data.stats import load_tokenizer
    from dgr_core.models.loading import ModelSpec, clear_model_cache, load_model
    from dgr_core.models.tiny import build_tiny_model

    root.mkdir(parents=True, exist_ok=True)
    base = build_tiny_model(root / "tiny-base")
    pages = ["app.py", *sorted(f"views/{p.name}" for p in (REPO / "views").glob("*.py"))]
    rows = []
    for name, folder in model_cases(base, root).items():
        spec = ModelSpec(str(folder), device="cpu")
        checks = {"load_tokenizer": classify(lambda s=spec: load_tokenizer(s, "hf")),
                  "load_model": classify(lambda s=spec: load_model(s))}
        clear_model_cache()
        for page in pages:
            at = AppTest.from_file(str(REPO / page), default_timeout=180)
            at.session_state["backend"] = "hf"
            at.session_state["target_model"] = spec
            at.session_state["model_ref"] = str(folder)
            at.run()
            if page == "views/data.py" and not at.exception and at.button(key="ds_load_tokenizer"):
                at.button(key="ds_load_tokenizer").click().run()
            checks[page] = page_outcome(at)
        rows.append((name, checks))
        print(name, checks, flush=True)
    return rows


def table(rows: list[tuple[str, dict[str, str]]]) -> list[str]:
    columns = list(rows[0][1])
    lines = ["| case | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for name, checks in rows:
        lines.append(f"| {name} | " + " | ".join(checks[c].replace("|", "/") for c in columns) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["files", "models"], default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    home = fresh_workspace("dgr-fuzz-")
    os.environ["DGR_HOME"] = str(home)
    root = Path(tempfile.mkdtemp(prefix="dgr-fuzz-cases-"))
    start = time.monotonic()
    files = run_files(root / "files", home) if args.only != "models" else []
    models = run_models(root / "models") if args.only != "files" else []
    outcomes = [v for _, checks in files + models for v in checks.values()]
    raw = [v for v in outcomes if v.startswith("RAW")]
    text = "\n".join([
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {len(outcomes) - len(raw)} / {len(outcomes)} checks without a "
        f"raw traceback ({len(files)} files, {len(models)} model folders)", "",
        f"Command: `python benchmarks/bench_fuzz.py` · machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f} · wall {(time.monotonic() - start) / 60:.1f} min · 'named: X' = the "
        "named error X (a message), 'named: shown' = an error or warning box on the page, 'RAW' = a raw traceback", "",
        *(table(files) if files else []), "", *(table(models) if models else []), ""])
    print(text)
    if not args.no_write:
        out = Path(__file__).with_name("results_fuzz.md")
        head = out.read_text() if out.is_file() else "# Fuzz: malformed files and broken model folders\n\n"
        out.write_text(head + text + "\n")
    sys.exit(1 if raw else 0)


if __name__ == "__main__":
    main()
