"""Generation benchmark: transformers one prompt at a time vs batched, and vLLM, on the same prompts, in one run;
and for scoring, vLLM `prompt_logprobs` vs the DGR Lens engine (speed and agreement, fp32 and bf16).

    .venv/bin/python benchmarks/bench_generate.py                  # HF single vs batched (the main environment)
    .venv-vllm/bin/python benchmarks/bench_generate.py             # + vLLM generation and scoring (make vllm-env)
    .venv-vllm/bin/python benchmarks/bench_generate.py --prompts 8 --score-rows 8 --no-score-bf16   # a quick look

Prompts: the refine job's joint-mode prompt on the first STAR-1 rows and the evaluate job's reasoning prompt on
arithmetic items, half each, greedy, `--max-new-tokens` each. tokens/s counts generated tokens (stop tokens
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
    p.add_argument("--prompts", type=int, default=16, help="prompts (half refine, half evaluate)")
    p.add_argument("--max-new-tokens", type=int, default=64)
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


def generation_rows(args, ws, rows) -> tuple[dict, list, int]:
    n_ref = args.prompts // 2
    convs = A.refine_conversations(rows[:n_ref]) + A.evaluate_conversations(args.prompts - n_ref)
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    hf = get_backend("hf", ModelSpec("demo", dtype=args.dtype), ws)
    hf.generate(convs[:1], GenerationConfig(max_new_tokens=4))  # warm-up
    out: dict = {}
    single, out["hf_single"] = timed_generate(hf, convs, cfg, one_at_a_time=True)
    batched, out["hf_batched"] = timed_generate(hf, convs, cfg)
    out["batched_vs_single_speedup"] = round(out["hf_batched"]["tokens_per_s"] / out["hf_single"]["tokens_per_s"], 2)
    out["batched_vs_single_diffs"] = A.compare_texts(single, batched)
    return out, convs, len(out["batched_vs_single_diffs"])


def vllm_generation(args, ws, convs, hf_batched_texts: list) -> dict:
    from dgr_core.backends import vllm as V

    t0 = time.perf_counter()
    vl = get_backend("vllm", ModelSpec("demo", dtype=args.dtype), ws)
    start = round(time.perf_counter() - t0, 1)
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens)
    vl.generate(convs[:1], GenerationConfig(max_new_tokens=4))  # warm-up
    gens, stats = timed_generate(vl, convs, cfg)
    V._ENGINES.clear()
    gc.collect()
    return {"engine_start_s": start, "vllm": stats, "vllm_vs_hf_batched_diffs": A.compare_texts(hf_batched_texts, gens)}


def scoring(args, ws, rows, dtype: str, with_vllm: bool) -> dict:
    hf = get_backend("hf", ModelSpec("demo", dtype=dtype), ws)
    enc = A.encode_rows(rows, hf.tokenizer, args.score_max_len)
    tokens = sum(len(e.input_ids) for e in enc)
    t0 = time.perf_counter()
    hs = list(hf.score(enc))
    out = {"dtype": dtype, "rows": len(enc), "input_tokens": tokens,
           "engine_tokens_per_s": round(tokens / (time.perf_counter() - t0), 1)}
    if with_vllm:
        from dgr_core.backends import vllm as V

        vl = get_backend("vllm", ModelSpec("demo", dtype=dtype), ws)
        list(vl.score(enc[:1]))  # warm-up
        t0 = time.perf_counter()
        vs = list(vl.score(enc))
        out["vllm_tokens_per_s"] = round(tokens / (time.perf_counter() - t0), 1)
        out["agreement"] = A.compare_scores(hs, vs)
        V._ENGINES.clear()
        gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ws = Workspace(REPO / "cache")
    with_vllm = vllm_available() and not args.no_vllm
    rows = A.star1_rows(STAR1, max(args.prompts, args.score_rows))
    report: dict = {"machine": machine_line(), "args": {k: str(v) for k, v in vars(args).items()}}
    print(report["machine"], flush=True)
    gen, convs, n_diff = generation_rows(args, ws, rows)
    report["generation"] = gen
    print(json.dumps({k: v for k, v in gen.items() if not k.endswith("diffs")}), f"diffs={n_diff}", flush=True)
    if with_vllm:
        hf = get_backend("hf", ModelSpec("demo", dtype=args.dtype), ws)
        hf_texts = hf.generate(convs, GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size))
        report["vllm_generation"] = vllm_generation(args, ws, convs, hf_texts)
        print(json.dumps(report["vllm_generation"])[:2000], flush=True)
    if args.score_rows:
        dtypes = ["float32"] + ([] if args.no_score_bf16 else ["bfloat16"])
        report["scoring"] = [scoring(args, ws, rows[: args.score_rows], d, with_vllm) for d in dtypes]
        print(json.dumps(report["scoring"]), flush=True)
    if args.json:
        args.json.write_text(A.to_json(report), encoding="utf-8")
    if n_diff and not args.allow_diff:
        print(f"FAIL: batched greedy text differs from one-at-a-time on {n_diff} prompt(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
