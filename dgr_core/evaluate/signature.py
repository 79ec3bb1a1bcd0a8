"""The eval signature: what makes two evaluations of one benchmark comparable, like for like.

    sig = eval_signature(benchmark="math500", kind="reasoning", item_ids=ids, generation=gen.to_dict(), samples=4,
                         judge="math-verify-0.9.0+rules-v1")
    sig["key"]                                  # 12 hex chars: equal keys = identical settings
    differences(sig_a, sig_b)                   # ["items: 10 (3f2a…) vs 100 (9bc1…)", "decoding: greedy vs …"]
    signature_of(info.result_as(EvalResult), "math500")    # read back from an evaluate run's typed result

Two results of one benchmark are compared (Safety-tax table, budget curve, scatter, run comparisons) only when
their signatures are equal. The signature holds:
- `benchmark`, and `items`: a hash of the sorted item ids with their count (a 10-item subset is not the full set);
- `decoding`: "greedy" (temperature 0), "reasoning" (temperature 0.6, top-p 0.95, the protocol of the reasoning-
  model papers) or "sampled" with its temperature and top-p, and `samples` per item (k);
- `budget`: max_new_tokens (a 256-token budget truncates what a 32k one finishes);
- `judge`: the grader or refusal judge with its version;
- `seeds`: the sampling seeds of the k samples ([] for greedy, which does not depend on a seed);
- `prompt`: a hash of the system prompt and the reasoning suffix (they change what the model answers).
The model is not part of it: the model is what is being compared.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dgr_core.jobs.results import EvalResult

REASONING_PROTOCOL = {"temperature": 0.6, "top_p": 0.95}  # DeepSeek-R1 / STAR-1 / R1-ACT evaluation decoding
LEGACY = "legacy"  # the item hash of a result written before signatures existed


def _hash(value: Any, n: int = 12) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def decoding_label(temperature: float, top_p: float) -> str:
    """"greedy", "reasoning" (the papers' protocol) or "sampled"."""
    if float(temperature) == 0:
        return "greedy"
    same = (abs(float(temperature) - REASONING_PROTOCOL["temperature"]) < 1e-9
            and abs(float(top_p) - REASONING_PROTOCOL["top_p"]) < 1e-9)
    return "reasoning" if same else "sampled"


def items_hash(item_ids: list[str]) -> str:
    return _hash(sorted(str(i) for i in item_ids))


def eval_signature(*, benchmark: str, kind: str, item_ids: list[str], generation: dict[str, Any], samples: int,
                   judge: str, system_prompt: str | None = None, reasoning_suffix: str = "") -> dict[str, Any]:
    """The signature of one benchmark's evaluation (see the module docstring), with its `key`."""
    temperature, top_p = float(generation.get("temperature", 0.0)), float(generation.get("top_p", 1.0))
    label = decoding_label(temperature, top_p)
    seed = int(generation.get("seed", 0))
    sig = {
        "benchmark": benchmark, "kind": kind, "n_items": len(item_ids), "items": items_hash(item_ids),
        "decoding": {"label": label, "temperature": temperature, "top_p": top_p if label != "greedy" else 1.0,
                     "samples": int(samples)},
        "budget": int(generation.get("max_new_tokens", 0)), "judge": str(judge),
        "seeds": [] if label == "greedy" else [seed + s for s in range(int(samples))],
        "prompt": _hash([system_prompt or "", reasoning_suffix if kind == "reasoning" else ""], 8),
    }
    return {**sig, "key": _hash(sig)}


def describe(sig: dict[str, Any]) -> str:
    """One short line: "100 items · reasoning k=4 · 32768 tok · math-verify-0.9.0+rules-v1"."""
    d = sig.get("decoding") or {}
    k = f" k={d.get('samples')}" if int(d.get("samples") or 1) > 1 else ""
    return (f"{sig.get('n_items', '?')} items · {d.get('label', '?')}{k} · {sig.get('budget', '?')} tok · "
            f"{sig.get('judge', '?')}")


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two signatures, in words (empty when they are equal)."""
    out = []
    if a.get("items") != b.get("items") or a.get("n_items") != b.get("n_items"):
        out.append(f"items: {a.get('n_items')} ({a.get('items')}) vs {b.get('n_items')} ({b.get('items')})")
    da, db = a.get("decoding") or {}, b.get("decoding") or {}
    if da != db:
        out.append(f"decoding: {_decoding_words(da)} vs {_decoding_words(db)}")
    for name in ("budget", "judge", "seeds", "prompt", "benchmark"):
        if a.get(name) != b.get(name):
            out.append(f"{name}: {a.get(name)} vs {b.get(name)}")
    return out


def _decoding_words(d: dict[str, Any]) -> str:
    label = d.get("label", "?")
    extra = "" if label == "greedy" else f" T={d.get('temperature')} top-p={d.get('top_p')}"
    return f"{label}{extra} k={d.get('samples', 1)}"


def signature_of(result: EvalResult | None, benchmark: str) -> dict[str, Any]:
    """The signature of one benchmark of an evaluate result (`dgr_core.jobs.results.EvalResult`). A result written
    before signatures existed gets one rebuilt from what it recorded, with its item set marked "legacy:<n>" (never
    equal to a current one, so an old evaluation is never silently joined with a new one)."""
    from dgr_core.jobs.results import BenchmarkMetrics, EvalResult

    res = result if result is not None else EvalResult()
    metric = res.metrics.get(benchmark) or BenchmarkMetrics()
    if metric.signature is not None:
        return metric.signature
    sig = eval_signature(benchmark=benchmark, kind=metric.kind, item_ids=[], generation=res.generation.to_dict(),
                         samples=1, judge=str(res.judges.get(metric.kind, res.judge)),
                         system_prompt=res.system_prompt, reasoning_suffix=res.reasoning_suffix or "")
    sig["n_items"] = metric.items
    sig["items"] = f"{LEGACY}:{sig['n_items']}"
    sig.pop("key")
    return {**sig, "key": _hash(sig)}
