"""Datasets from the Hugging Face Hub: `load_hf` (a preset's mapping and local copy when there is one, else the
hub through `datasets`, shape detected like a file's) and `fetch_hf_records`.

    df, mapping = load_hf("thu-coai/LRM-Safety-Study", split="nocot")

Offline (`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`), only the local cache is searched and a miss fails at once with
a message that says so; the flag is set for the call only (under a lock, `datasets` reads it process-wide).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd

from dgr_core.data.loaders import TRUE_VALUES, load_file, records_to_frame
from dgr_core.data.schema import ColumnMapping
from dgr_core.errors import DataError


def _env_offline() -> bool:
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in TRUE_VALUES for f in flags)


_OFFLINE_LOCK = threading.Lock()


@contextlib.contextmanager
def _offline_mode(offline: bool) -> Iterator[None]:
    """datasets and huggingface_hub read the offline flags once, at import. Re-apply them for this call so an
    environment set later (a test, a page toggle) still prevents network retries. The flags are process-wide:
    a lock keeps two sessions' calls from interleaving (one restoring "online" in the middle of the other)."""
    import datasets
    import huggingface_hub.constants as hub

    with _OFFLINE_LOCK:
        saved = (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE)
        if offline:
            datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _fetch_error(dataset_id: str, exc: Exception) -> DataError:
    offline = " (offline mode is on, so only the local cache was searched)" if _env_offline() else ""
    return DataError(
        f"could not fetch Hugging Face dataset '{dataset_id}'{offline}: {exc}. Check the id, split and config, "
        "and your network; HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 block downloads.", file=dataset_id)


def _pick_split(loaded: Any, split: str | None, dataset_id: str) -> tuple[Any, str]:
    """A single split out of what load_dataset returned (a DatasetDict when no split was asked for)."""
    if split is not None or not hasattr(loaded, "keys"):
        return loaded, split or "train"
    names = list(loaded.keys())
    if not names:
        raise DataError("the dataset has no splits", file=dataset_id)
    chosen = "train" if "train" in names else names[0]
    return loaded[chosen], chosen


def fetch_hf_records(dataset_id: str, *, split: str | None = None,
                     config: str | None = None) -> tuple[list[dict], str]:
    """Records of one split of a Hub dataset, and the split's name. Never runs remote code."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset_id or "") or ".." in dataset_id:
        raise DataError("not a Hugging Face dataset id (expected 'owner/name')", file=dataset_id or "(empty)")
    import datasets

    try:
        with _offline_mode(_env_offline()):
            loaded = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError…)
        raise _fetch_error(dataset_id, exc) from None
    chosen, split_name = _pick_split(loaded, split, dataset_id)
    return chosen.to_list(), split_name


def load_hf(dataset_id: str, *, split: str | None = None, config: str | None = None,
            mapping: ColumnMapping | None = None, local_ok: bool = True) -> tuple[pd.DataFrame, ColumnMapping]:
    """Canonical DataFrame of a Hub dataset split. For a preset (see `presets.PRESETS`) its mapping is used when
    none is given, and a split that exists as a local file is read from disk when `local_ok` (no network)."""
    from dgr_core.data.presets import PRESETS

    preset = PRESETS.get(dataset_id)
    if preset is not None:
        if mapping is None and preset.mapping is not None:
            mapping = ColumnMapping.from_dict(preset.mapping.to_dict())  # a copy: callers may edit it
        split = split or preset.default_split
        local = preset.local_path(split) if local_ok else None
        if local is not None:
            return load_file(local, mapping)
    records, split_name = fetch_hf_records(dataset_id, split=split, config=config)
    if not records:
        raise DataError(f"split '{split_name}' has no records", file=dataset_id)
    stem = dataset_id.rsplit("/", 1)[-1]
    return records_to_frame(records, mapping, file=f"{dataset_id} [{split_name}]", stem=stem)
