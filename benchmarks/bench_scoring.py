"""Scoring benchmark: the naive way, lm-evaluation-harness's way and the DGR Lens engine, in one process.

    .venv/bin/python benchmarks/bench_scoring.py                       # STAR-1, 1,000 rows, demo model, CPU
    .venv/bin/python benchmarks/bench_scoring.py --limit 200 --no-write  # a quicker look
    .venv/bin/python benchmarks/bench_scoring.py --random-arch qwen2-1.5b --device cuda --dtype bfloat16 \
        --methods engine --peak-tflops 989                                 # GPU: MFU of a 1.5B Qwen2 (random weights)

All three methods score the *same* token ids (rendered once with the model's chat template, reasoning and answer
in the assistant turn) and must agree on every response log-prob:
  (a) naive    one sample at a time; full-vocabulary fp32 log_softmax over every position;
  (b) harness  lm-evaluation-harness's loglikelihood path: sorted longest first, padded fixed-size batches,
               full-vocabulary log_softmax over the whole padded batch;
  (c) engine   dgr_core.scoring.engine: token-budget batches, decoder once, LM head only at response positions,
               chunked fp32 logsumexp + gather (the [tokens x vocab] fp32 tensor never exists).
It prints and records tokens/s (all input tokens forwarded, the same numerator for every method), the peak
resident memory above the baseline while each method runs (sampled every 2 ms from /proc/self/statm), and the
ratios. With --peak-tflops it also reports model FLOPs utilization against 2 * params FLOPs per token.
Results are appended to benchmarks/RESULTS.md (section "Scoring") with the command and the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgr_core.data.loaders import load_file  # noqa: E402
from dgr_core.models.loading import ModelSpec, load_model  # noqa: E402
from dgr_core.scoring.engine import iter_scores  # noqa: E402
from dgr_core.scoring.segments import PROMPT, Encoded, RenderConfig, render  # noqa: E402

STAR1 = REPO.parent / "shared" / "data" / "STAR-1" / "data" / "STAR-1.json"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
QWEN2_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True)


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


class PeakRSS:
    """Peak resident set size above the level at start, sampled in a background thread."""

    def __init__(self, every: float = 0.002):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _malloc_trim()  # hand memory freed by the previous method back to the OS, or its pool hides our peak
        self.base = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(self.every)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.base)


@dataclass
class Outcome:
    name: str
    seconds: float = 0.0
    tokens: int = 0
    peak_bytes: int = 0
    logprobs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def response_logprobs(logp_row: torch.Tensor, ids: torch.Tensor, segments: np.ndarray) -> np.ndarray:
    """Log-probs of the response tokens from one row of full-vocabulary log-probs."""
    target = logp_row[:-1].gather(1, ids[1:, None])[:, 0]
    keep = torch.from_numpy(segments[1:] > PROMPT)
    return target[keep[: len(target)]].float().numpy()


def run_naive(model, encs: list[Encoded]) -> dict[str, np.ndarray]:
    out = {}
    for e in encs:
        ids = torch.from_numpy(e.input_ids)
        logp = F.log_softmax(model(ids[None].to(model.device)).logits.float(), dim=-1)[0].cpu()
        out[e.key] = response_logprobs(logp, ids, e.segments)
    return out


def run_harness(model, encs: list[Encoded], batch_size: int, pad_id: int) -> dict[str, np.ndarray]:
    out = {}
    order = sorted(encs, key=lambda e: -len(e.input_ids))  # the harness sorts longest first
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(batch):
            ids[row, : len(e.input_ids)] = torch.from_numpy(e.input_ids)
            mask[row, : len(e.input_ids)] = 1
        logits = model(ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logp = F.log_softmax(logits.float(), dim=-1).cpu()
        for row, e in enumerate(batch):
            n = len(e.input_ids)
            out[e.key] = response_logprobs(logp[row, :n], ids[row, :n], e.segments)
    return out


def run_engine(model, encs: list[Encoded], token_budget: int, pad_id: int) -> dict[str, np.ndarray]:
    return {s.key: s.logprobs for s in iter_scores(model, encs, token_budget=token_budget, pad_id=pad_id)}


def measure(name: str, fn, encs: list[Encoded]) -> Outcome:
    print(f"[{name}] scoring {len(encs)} samples ...", flush=True)
    with torch.inference_mode(), PeakRSS() as mem:
        start = time.perf_counter()
        logprobs = fn(encs)
        seconds = time.perf_counter() - start
    out = Outcome(name, seconds, sum(len(e.input_ids) for e in encs), mem.peak, logprobs)
    print(f"[{name}] {out.tokens_per_s:8.1f} tokens/s  {seconds:7.1f} s  peak +{mem.peak / 2**20:7.0f} MiB", flush=True)
    return out


def load_rows(limit: int, seed: int) -> list[dict]:
    df, _ = load_file(STAR1)
    if limit < len(df):
        df = df.sample(n=limit, random_state=seed)
    return df.to_dict("records")


def build_model(args):
    if args.random_arch:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        config = Qwen2Config(**QWEN2_1_5B, torch_dtype=args.dtype)
        with torch.device(args.device):
            model = Qwen2ForCausalLM(config).to(getattr(torch, args.dtype)).eval()
        tokenizer = load_model(ModelSpec("demo")).tokenizer  # any ChatML tokenizer: ids < vocab_size
        return model, tokenizer, f"random-weight Qwen2 1.5B architecture ({args.dtype})"
    loaded = load_model(ModelSpec(args.model, device=args.device, dtype=args.dtype))
    return loaded.model, loaded.tokenizer, loaded.label


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"


def agreement(outcomes: list[Outcome]) -> float:
    ref = outcomes[0].logprobs
    worst = 0.0
    for o in outcomes[1:]:
        for key, lp in ref.items():
            worst = max(worst, float(np.abs(o.logprobs[key] - lp).max()) if len(lp) else 0.0)
    return worst


def report(args, outcomes: list[Outcome], label: str, n_rows: int, params: int) -> str:
    by = {o.name: o for o in outcomes}
    lines = [
        f"### {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} — {n_rows} STAR-1 rows, {label}",
        "", f"Command: `{' '.join(['python', *sys.argv])}`  ", f"Machine: {machine()}  ",
        f"Tokens scored per method: {outcomes[0].tokens:,} (prompt + response, chat template)", "",
        "| method | tokens/s | time (s) | peak RSS over baseline (MiB) |", "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {o.name} | {o.tokens_per_s:,.1f} | {o.seconds:,.1f} | {o.peak_bytes / 2**20:,.0f} |" for o in outcomes]
    lines.append("")
    if "engine" in by and "naive" in by:
        e, n = by["engine"], by["naive"]
        lines.append(f"- engine / naive speed: **{e.tokens_per_s / n.tokens_per_s:.2f}x** (target >= 3x); "
                     f"engine peak memory = **{e.peak_bytes / max(n.peak_bytes, 1):.2f}** of naive's (target <= 0.5)")
    if "engine" in by and "harness" in by:
        e, h = by["engine"], by["harness"]
        lines.append(f"- engine / harness speed: **{e.tokens_per_s / h.tokens_per_s:.2f}x** (target >= 1.5x); "
                     f"harness batch size {args.batch_size}, engine token budget {args.token_budget}")
    if len(outcomes) > 1:
        lines.append(f"- largest |difference| in any response log-prob between methods: {agreement(outcomes):.2e}")
    if args.peak_tflops and "engine" in by:
        flops = 2 * params * by["engine"].tokens_per_s
        lines.append(f"- MFU (2 x {params / 1e9:.2f}B params FLOPs/token vs {args.peak_tflops} TFLOPS peak): "
                     f"**{100 * flops / (args.peak_tflops * 1e12):.1f}%**")
    return "\n".join(lines) + "\n"


def append_result(text: str) -> None:
    header = "## Scoring (benchmarks/bench_scoring.py)\n"
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.is_file() else "# Benchmark results\n\n"
    if header not in current:
        current += "\n" + header + "\n"
    head, tail = current.split(header, 1)
    RESULTS.write_text(head + header + "\n" + text + "\n" + tail.lstrip("\n"), encoding="utf-8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--random-arch", choices=["qwen2-1.5b"], help="random weights of a real architecture (GPU speed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--limit", type=int, default=1000, help="STAR-1 rows (sampled with --seed when fewer than 1,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8, help="fixed batch size of the harness method")
    p.add_argument("--token-budget", type=int, default=1024, help="tokens per batch of the engine (the CPU default)")
    p.add_argument("--methods", default="naive,harness,engine")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak (bf16 dense) for MFU; 0 = skip")
    p.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args()
    if args.random_arch and args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.random_arch and args.dtype == "auto":
        args.dtype = "bfloat16" if torch.cuda.is_available() else "float32"

    model, tokenizer, label = build_model(args)
    pad = tokenizer.pad_token_id or 0
    rows = load_rows(args.limit, args.seed)
    cfg = RenderConfig(max_length=args.max_length)
    encs = [render(r, tokenizer, cfg, key=str(i)) for i, r in enumerate(rows)]
    runners = {"naive": lambda e: run_naive(model, e),
               "harness": lambda e: run_harness(model, e, args.batch_size, pad),
               "engine": lambda e: run_engine(model, e, args.token_budget, pad)}
    with torch.inference_mode():  # warm-up: first-call allocations and kernel selection are not the method's
        run_engine(model, encs[:2], args.token_budget, pad)
    outcomes = [measure(name, runners[name], encs) for name in args.methods.split(",")]
    text = report(args, outcomes, label, len(rows), sum(p.numel() for p in model.parameters()))
    print("\n" + text)
    if not args.no_write:
        append_result(text)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
