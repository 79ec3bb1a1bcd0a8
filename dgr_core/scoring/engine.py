"""The forward pass of scoring, for transformers models: fast, exact, and memory-bounded.

How it is fast:
- samples are sorted by length and packed into batches by a token budget (batch size x padded length), so short
  samples ride together and padding stays small;
- the decoder runs once per batch without the LM head; logits are computed only at positions that predict a
  response token, in row chunks, with an fp32 logsumexp and a gather of the target logit, so the full
  [tokens x vocab] fp32 tensor never exists;
- on out-of-memory the budget is halved and the batch retried (logged), never silently skipped; a single
  sample that does not fit raises.

Outputs per sample: the log-prob and rank of every response token, and the mean of the chosen layer's hidden
states over response tokens (the sample's embedding).

    from dgr_core.scoring.engine import score_encoded
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dgr_core.scoring.segments import PROMPT, Encoded

log = logging.getLogger(__name__)


@dataclass
class TokenScores:
    key: str
    token_ids: np.ndarray  # int32 [R] response tokens
    logprobs: np.ndarray  # float32 [R]
    ranks: np.ndarray  # int32 [R]: 1 = the model's top choice
    segments: np.ndarray  # int8 [R]
    embedding: np.ndarray  # float32 [H]
    truncated: bool


@dataclass
class BatchStats:
    samples: int
    tokens: int  # real tokens (no padding)
    padded_tokens: int
    seconds: float


def plan_batches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Indices grouped longest first so that len(batch) * longest <= token_budget (at least one per batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _pad(samples: list[Encoded], pad_id: int, device) -> tuple:
    import torch

    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        ids[row, : len(s.input_ids)] = torch.from_numpy(s.input_ids)
        mask[row, : len(s.input_ids)] = 1
    return ids.to(device), mask.to(device)


def _logit_transform(model):
    """Model-specific logit scaling / soft-capping applied by the LM head's caller in transformers."""
    cfg = model.config
    scale = getattr(cfg, "logit_scale", None) or (1.0 / cfg.logits_scaling if getattr(cfg, "logits_scaling", None) else None)
    cap = getattr(cfg, "final_logit_softcapping", None)

    def apply(logits):
        import torch

        if scale:
            logits = logits * scale
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return apply


def gather_logprobs(hidden, targets, lm_head, transform, chunk_rows: int = 256):
    """log p(target) and rank for each row of `hidden` [N, H], chunked so [N, V] fp32 never exists.

    Per chunk: fp32 logits, one fused log_softmax (faster on CPU than logsumexp's separate max/sub/exp/sum passes),
    a gather, and the rank as a count of larger logits summed in int32 (an int64 sum of the comparison costs twice
    as much)."""
    import torch

    if hidden.shape[0] == 0:  # a batch whose samples were all cut inside the prompt: no response tokens
        return hidden.new_zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.int32, device=hidden.device)
    logps, ranks = [], []
    for start in range(0, hidden.shape[0], chunk_rows):
        logits = transform(lm_head(hidden[start : start + chunk_rows])).float()
        tgt = targets[start : start + chunk_rows, None]
        logps.append(torch.log_softmax(logits, dim=-1).gather(1, tgt)[:, 0])
        ranks.append((logits > logits.gather(1, tgt)).sum(dim=-1, dtype=torch.int32) + 1)
        del logits
    return torch.cat(logps), torch.cat(ranks)


class _LayerCapture:
    """Forward hook that keeps the output hidden states of one decoder layer."""

    def __init__(self, module):
        self.value = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, _inp, out):
        self.value = out[0] if isinstance(out, tuple) else out

    def close(self):
        self.handle.remove()


def _decoder_layers(model):
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    layers = getattr(base, "layers", None) or getattr(base, "h", None)
    if layers is None:
        raise ValueError(f"Cannot find decoder layers of {type(model).__name__} for embedding layer selection.")
    return layers


def forward_batch(model, samples: list[Encoded], layer: int, pad_id: int) -> list[TokenScores]:
    """Score one padded batch: decoder, response-position LM head, pooled embeddings."""
    import torch

    device = next(model.parameters()).device
    ids, mask = _pad(samples, pad_id, device)
    capture = None if layer == -1 else _LayerCapture(_decoder_layers(model)[layer])
    try:
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        padded = bool((mask == 0).any())  # no padding (e.g. one sample): no mask, so attention takes its causal path
        hidden = base(input_ids=ids, attention_mask=mask if padded else None, use_cache=False).last_hidden_state
        layer_hidden = hidden if capture is None else capture.value
    finally:
        if capture is not None:
            capture.close()
    seg = torch.zeros(ids.shape, dtype=torch.int8)
    for row, s in enumerate(samples):
        seg[row, : len(s.segments)] = torch.from_numpy(s.segments)
    seg = seg.to(device)
    resp = seg[:, 1:] > PROMPT  # position t predicts token t+1
    rows, cols = resp.nonzero(as_tuple=True)
    logp, rank = gather_logprobs(hidden[rows, cols], ids[rows, cols + 1], model.get_output_embeddings(),
                                 _logit_transform(model))
    return _split_per_sample(samples, rows, cols, logp, rank, layer_hidden, seg, ids)


def _split_per_sample(samples, rows, cols, logp, rank, layer_hidden, seg, ids) -> list[TokenScores]:
    import torch

    out = []
    rows_np = rows.cpu().numpy()
    logp_np, rank_np = logp.cpu().numpy(), rank.cpu().numpy().astype(np.int32)
    for row, s in enumerate(samples):
        sel = rows_np == row
        resp_mask = seg[row] > PROMPT
        pooled = layer_hidden[row][resp_mask].float().mean(dim=0) if resp_mask.any() else torch.zeros(layer_hidden.shape[-1])
        pos = cols[rows == row] + 1
        out.append(TokenScores(
            key=s.key,
            token_ids=ids[row, pos].cpu().numpy().astype(np.int32),
            logprobs=logp_np[sel].astype(np.float32),
            ranks=rank_np[sel],
            segments=seg[row, pos].cpu().numpy().astype(np.int8),
            embedding=pooled.cpu().numpy().astype(np.float32),
            truncated=s.truncated,
        ))
    return out


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def iter_scores(model, samples: list[Encoded], *, token_budget: int, layer: int = -1, pad_id: int = 0,
                on_batch: Callable[[BatchStats], None] | None = None) -> Iterator[TokenScores]:
    """Score `samples` in token-budget batches (longest first); yields one TokenScores per sample."""
    import torch

    pending = plan_batches([len(s.input_ids) for s in samples], token_budget)
    budget = token_budget
    with torch.inference_mode():
        while pending:
            batch = [samples[i] for i in pending.pop(0)]
            start = time.perf_counter()
            try:
                scores = forward_batch(model, batch, layer, pad_id)
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not _is_oom(exc) or len(batch) == 1:
                    raise  # a single sample that does not fit cannot be split further
                budget = _halved_budget(batch, budget)
                log.warning("Out of memory on a batch of %d; halving the token budget to %d and retrying",
                            len(batch), budget)
                _free_cache()
                pending = _reindex(samples, batch, budget) + pending
                continue
            if on_batch:
                width = max(len(s.input_ids) for s in batch)
                real = sum(len(s.input_ids) for s in batch)
                on_batch(BatchStats(len(batch), real, width * len(batch), time.perf_counter() - start))
            yield from scores


def _halved_budget(batch: list[Encoded], budget: int) -> int:
    """Half of what the failed batch used (never below its longest sample), so the re-plan always splits it."""
    width = max(len(s.input_ids) for s in batch)
    return max(width, min(budget, width * len(batch)) // 2)


def _reindex(samples: list[Encoded], batch: list[Encoded], budget: int) -> list[list[int]]:
    """Re-plan the indices (into `samples`) of a failed batch under a smaller budget."""
    position = {id(s): i for i, s in enumerate(samples)}
    ids = [position[id(b)] for b in batch]
    sub = plan_batches([len(b.input_ids) for b in batch], budget)
    return [[ids[j] for j in group] for group in sub]


def _free_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
