"""The output family: paired cosine similarity of each dataset answer to the model's own answer to the same prompt,
and how much the pairing matters (a permutation test against shuffled pairs).
"""

from __future__ import annotations

import numpy as np

from dgr_core.shift.stats.base import (
    ShiftInputError,
    ShiftStat,
    as_samples,
    boot_counts,
    percentile_ci,
    perm_p,
)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if np.any(norms == 0):
        raise ShiftInputError(f"{int(np.sum(norms == 0))} embedding row(s) are all zeros; cosine is undefined")
    return np.einsum("ij,ij->i", a, b) / norms


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _pairing_gain(d: np.ndarray, o: np.ndarray, rng: np.random.Generator, n_perm: int) -> tuple[float, float | None]:
    """Mean cosine of matched rows minus the mean over mismatched rows, and its permutation p-value.

    With unit rows, the sum over all (i, j) of cos(d_i, o_j) is sum(d) · sum(o), so the off-diagonal mean costs
    O(n·dim) and a permutation only changes which pairs are on the diagonal.
    """
    du, ou = _unit_rows(d), _unit_rows(o)
    n = du.shape[0]
    total = float(du.sum(0) @ ou.sum(0))

    def gain(paired_sum: np.ndarray | float) -> np.ndarray | float:
        return paired_sum / n - (total - paired_sum) / (n * (n - 1))

    observed = float(gain(np.einsum("ij,ij->", du, ou)))
    if n < 3 or n_perm <= 0:
        return observed, None
    # One permutation at a time: n_perm x n x dim at once would be gigabytes for thousands of prompts.
    null = np.array([np.einsum("ij,ij->", du, ou[rng.permutation(n)]) for _ in range(n_perm)])
    return observed, perm_p(observed, np.asarray(gain(null)))


def output_similarity(
    emb_dataset_answers: np.ndarray, emb_model_answers: np.ndarray, *, seed: int = 0, n_boot: int = 200,
    n_perm: int = 200,
) -> ShiftStat:
    """Mean paired cosine similarity between each dataset answer and the model's own answer to the same prompt.

    Rows must be aligned (row i of both arrays answers prompt i). CI by bootstrap over prompts. The effect size
    is the *pairing gain*: the mean paired cosine minus the mean cosine of each dataset answer to the model's
    answers to the *other* prompts. Answers that all look alike (one fixed refusal) score a high similarity but a
    gain near 0; a gain well above 0 means the data answers each prompt the way the model does. The p-value is a
    permutation test of that gain (shuffling which own answer goes with which prompt); it needs 3+ prompts.
    """
    d = as_samples(emb_dataset_answers, "dataset answer embeddings")
    o = as_samples(emb_model_answers, "model answer embeddings")
    if d.shape != o.shape:
        raise ShiftInputError(f"paired embeddings must have one shape; got {d.shape} and {o.shape}")
    cos = _row_cosines(d, o)
    rng = np.random.default_rng(seed)
    boot = boot_counts(rng, cos.size, n_boot) @ cos / cos.size
    lo, hi = percentile_ci(boot)
    gain, p = _pairing_gain(d, o, rng, n_perm)
    return ShiftStat(
        key="output_similarity", name="Similarity to model's own answer", family="output",
        value=float(cos.mean()), ci_low=lo, ci_high=hi, effect_size=gain,
        effect_size_name="pairing gain (paired − unpaired mean cosine)", p_value=p,
        n_a=cos.size, n_b=cos.size,
        description="Mean cosine between each dataset answer and what the target model itself answers to the same "
        "prompt (1 = says the same thing; lower = the data puts words in the model's mouth).",
    )
