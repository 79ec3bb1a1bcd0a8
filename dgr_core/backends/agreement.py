"""How far two backends agree: per-token log-probs, segment NLLs and generated text, on real prompts.

Used by the vLLM tests (tests/test_vllm.py) and by `benchmarks/bench_generate.py`, so the figures in RESULTS.md
and the tolerances the tests assert come from the same code:

    rows = star1_rows(path, 40)                         # STAR-1 prompt / reasoning / answer
    enc = encode_rows(rows, tokenizer, max_length=1024)
    report = compare_scores(list(hf.score(enc)), list(vllm.score(enc)))
    convs = refine_conversations(rows) + evaluate_conversations(8)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dgr_core.backends.base import Generation
from dgr_core.scoring.engine import TokenScores
from dgr_core.scoring.segments import ANSWER, REASONING, Encoded, RenderConfig, render


def star1_rows(path: Path, n: int) -> list[dict[str, Any]]:
    """The first `n` rows of STAR-1 as canonical rows (prompt, reasoning, answer), through the project's loader."""
    from dgr_core.data.loaders import load_file

    df, _ = load_file(Path(path))
    return [{"id": str(r["id"]), "prompt": r["prompt"], "reasoning": r["reasoning"], "answer": r["answer"],
             "category": r.get("category", "")} for r in df.head(n).to_dict("records")]


def encode_rows(rows: Sequence[dict[str, Any]], tokenizer: Any, max_length: int = 4096) -> list[Encoded]:
    cfg = RenderConfig(max_length=max_length)
    return [render(r, tokenizer, cfg, key=str(r["id"])) for r in rows]


def segment_nll(s: TokenScores, segment: int) -> float:
    """Mean negative log-prob of the tokens of one segment (nan if it has none)."""
    sel = s.segments == segment
    return float(-s.logprobs[sel].mean()) if sel.any() else float("nan")


def compare_scores(a: Sequence[TokenScores], b: Sequence[TokenScores]) -> dict[str, float]:
    """Largest and mean |Δ log-prob| per token, largest |Δ| of the reasoning / answer NLL per sample, and the share
    of tokens whose rank-1 flag differs (samples matched by key; same token ids required)."""
    diffs: list[np.ndarray] = []
    seg_diffs: dict[int, list[float]] = {REASONING: [], ANSWER: []}
    rank_flips = 0
    by_key = {y.key: y for y in b}  # the engine yields in batch order, not input order
    if len(by_key) != len(a) or {x.key for x in a} != set(by_key):
        raise ValueError("the two score lists hold different samples")
    for x, y in ((x, by_key[x.key]) for x in a):
        if not np.array_equal(x.token_ids, y.token_ids):
            raise ValueError(f"sample {x.key}: the two backends scored different tokens")
        diffs.append(np.abs(x.logprobs.astype(np.float64) - y.logprobs))
        rank_flips += int(((x.ranks == 1) != (y.ranks == 1)).sum())
        for seg, out in seg_diffs.items():
            d = abs(segment_nll(x, seg) - segment_nll(y, seg))
            if not np.isnan(d):
                out.append(d)
    flat = np.concatenate(diffs) if diffs else np.zeros(0)
    return {"samples": len(diffs), "tokens": int(flat.size), "max_abs_token": float(flat.max(initial=0.0)),
            "mean_abs_token": float(flat.mean()) if flat.size else 0.0,
            "max_abs_nll_reasoning": max(seg_diffs[REASONING], default=0.0),
            "max_abs_nll_answer": max(seg_diffs[ANSWER], default=0.0),
            "top1_flips": rank_flips}


def refine_conversations(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The refine job's joint-mode prompt for each row (the default template, as the Refine page sends it)."""
    from dgr_core.refine.engine import _conversation
    from dgr_core.refine.templates import default_template, split_parts

    part = split_parts(default_template("joint"))[0]
    return [_conversation(part, dict(r)) for r in rows]


def evaluate_conversations(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """The evaluate job's reasoning prompts for `n` arithmetic items (levels 1-2, the default)."""
    from dgr_core.evaluate.arithmetic import generate_arithmetic
    from dgr_core.evaluate.runner import EvalConfig, build_conversation

    df = generate_arithmetic(n, [1, 2], seed)
    cfg = EvalConfig()
    return [build_conversation(str(p), "reasoning", cfg) for p in df["prompt"]]


def compare_texts(a: Sequence[Generation], b: Sequence[Generation]) -> list[dict[str, Any]]:
    """The pairs whose text differs: index, common prefix length in characters, and both texts."""
    out = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.text != y.text:
            prefix = next((k for k, (c, d) in enumerate(zip(x.text, y.text, strict=False)) if c != d), min(len(x.text), len(y.text)))
            out.append({"index": i, "common_prefix_chars": prefix, "a": x.text, "b": y.text})
    return out


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)
