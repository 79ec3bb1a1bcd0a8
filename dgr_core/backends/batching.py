"""Batched generation with transformers: length-sorted batches, left padding, one KV-cached `generate` per batch.

Why: on 2 CPU cores one-prompt-at-a-time `generate` is bound by per-step overhead (tiny matmuls, Python); a batch
of prompts shares every decoding step. How:

1. each prompt is rendered to token ids once; prompts are sorted by token length (longest first), so a batch
   holds prompts of similar length and pads little;
2. a batch is left-padded by hand with an attention mask (so every row's last prompt token sits at the same
   position and the new tokens line up); transformers derives position ids from the mask, so a padded row
   decodes like the same prompt alone;
3. `generate` runs with its KV cache; a row that emits an end-of-turn token is finished (transformers pads it
   from then on while the others go on); each row is cut at its first stop token;
4. results go back in the callers' order, `n` samples per prompt next to each other.

`benchmarks/bench_generate.py` measures it against one prompt at a time (same greedy text, tokens/s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dgr_core.backends.base import Generation, GenerationConfig


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most `batch_size`, longest prompts first (ties keep input order)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    size = max(1, int(batch_size))
    return [order[s : s + size] for s in range(0, len(order), size)]


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """(input_ids, attention_mask), each row left-padded to the longest."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return ids, mask


def cut_at_stop(ids: list[int], stops: set[int]) -> tuple[list[int], str]:
    """The new tokens up to (not including) the first stop token, and "stop" or "length"."""
    cut = next((i for i, t in enumerate(ids) if t in stops), None)
    return (ids, "length") if cut is None else (ids[:cut], "stop")


def generate_batched(model: Any, prompts: list[list[int]], cfg: GenerationConfig, *, pad_id: int,
                     stops: set[int], decode: Callable[[list[int]], str],
                     on_done: Callable[[int], None] | None = None) -> list[Generation]:
    """`cfg.n` generations per prompt (grouped by prompt, in input order) from token-id prompts."""
    import torch

    torch.manual_seed(cfg.seed)
    n = max(1, cfg.n)
    results: dict[int, list[Generation]] = {}
    for idx in length_sorted_batches([len(p) for p in prompts], cfg.batch_size):
        ids, mask = left_pad([prompts[i] for i in idx], pad_id)
        rows = _generate_rows(model, ids, mask, cfg, pad_id)
        for j, i in enumerate(idx):
            results[i] = [_to_generation(rows[j * n + k], stops, decode) for k in range(n)]
        if on_done:
            on_done(len(idx))
    return [g for i in range(len(prompts)) for g in results[i]]


def _generate_rows(model: Any, ids: list[list[int]], mask: list[list[int]], cfg: GenerationConfig,
                   pad_id: int) -> list[list[int]]:
    """New token ids of each row (`cfg.n` rows per prompt), padding included."""
    import torch

    input_ids = torch.tensor(ids, device=model.device)
    attention_mask = torch.tensor(mask, device=model.device)
    sampling = cfg.temperature > 0
    kwargs: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": cfg.max_new_tokens, "pad_token_id": pad_id,
                              "use_cache": True}
    if sampling:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, num_return_sequences=max(1, cfg.n))
    else:  # greedy: the n samples are the same text; decode once and repeat the rows
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        seqs = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    new = [row[input_ids.shape[1]:].tolist() for row in seqs]
    return new if sampling else [r for r in new for _ in range(max(1, cfg.n))]


def _to_generation(ids: list[int], stops: set[int], decode: Callable[[list[int]], str]) -> Generation:
    kept, finish = cut_at_stop(ids, stops)
    return Generation(decode(kept).strip(), finish, len(kept))
