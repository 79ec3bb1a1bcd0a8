"""Generation benchmark: transformers one prompt at a time vs batched, and vLLM, on the same prompts, in one run;
and for scoring, vLLM `prompt_logprobs` vs the DGR Lens engine (speed and agreement, fp32 and bf16).

    .venv/bin/python benchmarks/bench_generate.py                  # HF single vs batched (the main environment)
    .venv-vllm/bin/python benchmarks/bench_generate.py             # + vLLM generation and scoring (make vllm-env)
    .venv-vllm/bin/python benchmarks/bench_generate.py --prompts 8 --score-rows 8 --no-score-bf16   # a quick look

Prompt sets (`--sets`, see `prompt_sets`): the evaluate job's reasoning prompt on arithmetic items, the refine
job's joint-mode prompt on the first STAR-1 rows, and the STAR-1 prompts alone (refine's self mode); greedy,
`--max-new-tokens` each. tokens/s counts generated tokens (stop tokens
excluded) over wall time. HF batched must give the same text as HF one prompt at a time: the script checks and
reports every difference (exit code 1 if any, unless --allow-diff). vLLM's greedy text is compared with HF's too.

Scoring: `--score-rows` STAR-1 rows (rendered with the chat template, cut at `--score-max-len` tokens) scored by the
engine (`hf`) and by vLLM's prompt_logprobs; the per-token and per-sample segment-NLL differences are reported
(dgr_core.backends.agreement). The vLLM engine start is timed apart from the runs (a warm-up request precedes
each timed run). The machine is shared: say what else ran when you record figures (benchmarks/results_generate.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as job workers run (dgr_core/jobs/manager.py)
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgr_core.backends import GenerationConfig, get_backend  # noqa: E402
from dgr_core.backends import agreement as A  # noqa: E402
from dgr_core.backends.vllm import vllm_available  # noqa: E402
from dgr_core.models.loading import ModelSpec  # noqa: E402
from dgr_core.workspace import Workspace  # noqa: E402

STAR1 = REPO.parent / "shared" / "data" / "STAR-1" / "data" / "STAR-1.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=16, help="evaluate prompts (arithmetic, reasoning suffix)")
    p.add_argument("--refine-prompts", type=int, default=8, help="refine prompts (STAR-1 rows, joint template)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--sets", default="evaluate,refine,self", help="prompt sets, comma-separated (see prompt_sets)")
    p.add_argument("--batch-size", type=int, default=16, help="HF batched: prompts per generate()")
    p.add_argument("--dtype", default="float32", help="generation dtype (both backends)")
    p.add_argument("--score-rows", type=int, default=40, help="STAR-1 rows for the scoring comparison (0 = skip)")
    p.add_argument("--score-max-len", type=int, default=512)
    p.add_argument("--no-score-bf16", action="store_true", help="skip the bf16 scoring comparison")
    p.add_argument("--no-vllm", action="store_true", help="skip vLLM even where it is installed")
    p.add_argument("--allow-diff", action="store_true", help="exit 0 even if batched text differs from single")
    p.add_argument("--json", type=Path, help="write all figures here as JSON")
    return p.parse_args(argv)


def machine_line() -> str:
    load = os.getloadavg()
    return (f"{platform.node()} · {os.cpu_count()} CPUs · {platform.processor() or platform.machine()} · "
            f"load avg {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at start · python {platform.python_version()}")


def timed_generate(backend, convs, cfg: GenerationConfig, one_at_a_time: bool = False) -> tuple[list, dict]:
    t0 = time.perf_counter()
    if one_at_a_time:
        gens = [g for c in convs for g in backend.generate([c], GenerationConfig(**{**cfg.to_dict(), "batch_size": 1}))]
    else:
        gens = backend.generate(convs, cfg)
    secs = time.perf_counter() - t0
    tokens = sum(g.n_tokens for g in gens)
    return gens, {"seconds": round(secs, 2), "tokens": tokens, "tokens_per_s": round(tokens / secs, 1)}


def prompt_sets(args, rows) -> dict[str, list]:
    """evaluate: arithmetic prompts (short prompts, short answers); refine: the joint-mode prompt holding a whole
    STAR-1 trace (prefill dominates); self: the STAR-1 prompts alone, as the refine job's self mode sends them
    (short prompts, long answers: decoding dominates)."""
    sets = {"evaluate": A.evaluate_conversations(args.prompts),
            "refine": A.refine_conversations(rows[: args.refine_prompts]),
            "self": [[{"role": "user", "content": str(r["prompt"])}] for r in rows[: args.prompts]]}
    return {name: sets[name] for name in args.sets.split(",")}


def hf_generation(args, ws, sets: dict[str, list]) -> tuple[dict, dict, int]:
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    hf = get_backend("hf", ModelSpec("demo", dtype=args.dtype), ws)
    hf.generate(next(iter(sets.values()))[:1], GenerationConfig(max_new_tokens=4))  # warm-up
    out, texts, n_diff = {}, {}, 0
    for name, convs in sets.items():
        single, s_stats = timed_generate(hf, convs, cfg, one_at_a_time=True)
        batched, b_stats = timed_generate(hf, convs, cfg)
        diffs = A.compare_texts(single, batched)
        n_diff += len(diffs)
        out[name] = {"prompts": len(convs), "hf_single": s_stats, "hf_batched": b_stats,
                     "batched_vs_single": round(b_stats["tokens_per_s"] / s_stats["tokens_per_s"], 2),
                     "batched_vs_single_diffs": diffs}
        texts[name] = batched
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "batched_vs_single_diffs"}),
              f"diffs={len(diffs)}", flush=True)
    return out, texts, n_diff


def vllm_generation(args, vl, sets: dict[str, list], hf_texts: dict, out: dict) -> None:
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens)
    vl.generate(next(iter(sets.values()))[:1], GenerationConfig(max_new_tokens=4))  # warm-up
    for name, convs in sets.items():
        gens, stats = timed_generate(vl, convs, cfg)
        out[name].update(vllm=stats, vllm_vs_hf_batched=round(stats["tokens_per_s"] / out[name]["hf_batched"]["tokens_per_s"], 2),
                         vllm_vs_hf_diffs=A.compare_texts(hf_texts[name], gens))
        print(name, "vllm", json.dumps(stats), f"diffs={len(out[name]['vllm_vs_hf_diffs'])}", flush=True)


def hf_scoring(args, ws, rows, dtype: str) -> tuple[dict, list, list]:
    hf = get_backend("hf", ModelSpec("demo", dtype=dtype), ws)
    enc = A.encode_rows(rows, hf.tokenizer, args.score_max_len)
    tokens = sum(len(e.input_ids) for e in enc)
    t0 = time.perf_counter()
    scores = list(hf.score(enc))
    return ({"dtype": dtype, "rows": len(enc), "input_tokens": tokens,
             "engine_tokens_per_s": round(tokens / (time.perf_counter() - t0), 1)}, enc, scores)


def vllm_scoring(vl, enc, hf_scores, out: dict, fp32_scores=None) -> None:
    tokens = sum(len(e.input_ids) for e in enc)
    list(vl.score(enc[:1]))  # warm-up
    t0 = time.perf_counter()
    vs = list(vl.score(enc))
    out["vllm_tokens_per_s"] = round(tokens / (time.perf_counter() - t0), 1)
    out["agreement_vs_engine_same_dtype"] = A.compare_scores(hf_scores, vs)
    if fp32_scores is not None:
        out["agreement_vs_engine_fp32"] = A.compare_scores(fp32_scores, vs)
        out["engine_bf16_vs_engine_fp32"] = A.compare_scores(fp32_scores, hf_scores)
    print("scoring", json.dumps(out), flush=True)


def start_vllm(ws, dtype: str, report: dict):
    from dgr_core.backends import vllm as V

    V._ENGINES.clear()  # the previous engine shuts down when collected
    gc.collect()
    t0 = time.perf_counter()
    vl = get_backend("vllm", ModelSpec("demo", dtype=dtype), ws)
    report.setdefault("vllm_engine_start_s", {})[dtype] = round(time.perf_counter() - t0, 1)
    return vl


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ws = Workspace(REPO / "cache")
    with_vllm = vllm_available() and not args.no_vllm
    rows = A.star1_rows(STAR1, max(args.prompts, args.refine_prompts, args.score_rows))
    report: dict = {"machine": machine_line(), "args": {k: str(v) for k, v in vars(args).items()}}
    print(report["machine"], flush=True)
    sets = prompt_sets(args, rows)
    report["generation"], hf_texts, n_diff = hf_generation(args, ws, sets)
    dtypes = ([] if not args.score_rows else ["float32"]) + ([] if args.no_score_bf16 or not args.score_rows
                                                             else ["bfloat16"])
    scoring = {d: hf_scoring(args, ws, rows[: args.score_rows], d) for d in dtypes}
    report["scoring"] = {d: v[0] for d, v in scoring.items()}
    if with_vllm:
        vl = start_vllm(ws, args.dtype, report)
        vllm_generation(args, vl, sets, hf_texts, report["generation"])
        for d in dtypes:
            vl = vl if d == args.dtype else start_vllm(ws, d, report)
            fp32 = scoring["float32"][2] if d != "float32" else None
            vllm_scoring(vl, scoring[d][1], scoring[d][2], report["scoring"][d], fp32)
    if args.json:
        args.json.write_text(A.to_json(report), encoding="utf-8")
    if n_diff and not args.allow_diff:
        print(f"FAIL: batched greedy text differs from one-at-a-time on {n_diff} prompt(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
