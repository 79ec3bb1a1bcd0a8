"""The items of an evaluation and the file its graded outputs go to.

    items = load_items(cfg)            # benchmark, id, kind, prompt, reference, category: seeded subsets
    build_conversation(prompt, kind, cfg)              # system prompt, prompt, reasoning suffix
    records = read_outputs(run_dir / OUTPUTS_FILE)     # one graded record per (benchmark, id, sample)

A larger `limit` extends a smaller one (a seeded permutation); a line torn by a kill is cut before appending.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.evaluate.benchmarks import load_arithmetic, load_benchmark, load_jsonl_prompts
from dgr_core.evaluate.config import ARITHMETIC_ALL, BenchmarkSource, EvalConfig
from dgr_core.workspace import append_jsonl, read_jsonl

OUTPUTS_FILE = "outputs.jsonl"


def subset(df: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """`limit` rows picked by a seeded permutation, in their original order; the first `limit` of the same
    permutation, so a larger limit keeps every item of a smaller one. 0 (or more than there are) = all."""
    if limit <= 0 or limit >= len(df):
        return df.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).permutation(len(df))[:limit])
    return df.iloc[keep].reset_index(drop=True)


def _load_source(source: BenchmarkSource, cfg: EvalConfig) -> pd.DataFrame:
    limit = cfg.limit_of(source)
    if source.path is not None:
        df = load_jsonl_prompts(source.path, source.prompt_field, id_field=source.id_field,
                                reference_field=source.reference_field, kind=source.kind,  # type: ignore[arg-type]
                                benchmark=source.name)  # kind: checked against KINDS by check_config
        return subset(df, limit, cfg.seed)
    if source.name == "arithmetic":  # generated: make exactly `limit` items at the chosen levels
        return load_arithmetic(limit or ARITHMETIC_ALL, tuple(cfg.arithmetic_levels), seed=0)
    return subset(load_benchmark(source.name), limit, cfg.seed)


def load_items(cfg: EvalConfig) -> pd.DataFrame:
    """Every item of the run (BENCHMARK_COLUMNS), benchmark after benchmark, in config order."""
    frames = [_load_source(b, cfg) for b in cfg.benchmarks]
    return pd.concat(frames, ignore_index=True)


def item_prompts(cfg: EvalConfig) -> list[str]:
    """The prompts an evaluation with these settings asks (what training should hold out); loads no model."""
    return list(dict.fromkeys(load_items(cfg)["prompt"].astype(str)))


def build_conversation(prompt: str, kind: str, cfg: EvalConfig) -> list[dict[str, str]]:
    """The chat sent for one item: system prompt (if any), then the prompt (+ the suffix for reasoning)."""
    content = f"{prompt}\n\n{cfg.reasoning_suffix}" if kind == "reasoning" and cfg.reasoning_suffix else prompt
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return [*system, {"role": "user", "content": content}]


def read_outputs(path: Path) -> list[dict[str, Any]]:
    """The records of an outputs.jsonl; a line cut by a crash (or being written right now) is skipped."""
    return [r for r in read_jsonl(Path(path)) if isinstance(r, dict)]


def repair_outputs(path: Path) -> list[dict[str, Any]]:
    """Read the finished records and rewrite the file with only those, so appending after a crash that cut the
    last line does not glue a new record onto half an old one."""
    records = read_outputs(path)
    if Path(path).is_file():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if text != Path(path).read_text(encoding="utf-8"):
            tmp = Path(path).with_suffix(".repair.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    return records


def append_outputs(path: Path, records: Iterable[dict[str, Any]]) -> None:
    append_jsonl(path, records)  # cuts a line torn by an earlier kill first
