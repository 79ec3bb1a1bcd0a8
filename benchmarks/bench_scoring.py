"""Scoring benchmark: the naive way, lm-evaluation-harness's way and the DGR Lens engine, in one process.

    .venv/bin/python benchmarks/bench_scoring.py                       # STAR-1, 1,000 rows, demo model, CPU
    .venv/bin/python benchmarks/bench_scoring.py --limit 200 --no-write  # a quicker look
    .venv/bin/python benchmarks/bench_scoring.py --methods naive,engine,naive:bfloat16,engine:bfloat16
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

Roofline (CPU): the same run times dense matmuls of the decoder's shapes on this machine (the GEMM peak) and
counts each method's weight-matmul FLOPs (decoder linears on every real token, the LM head where the method
computes it). A method's "GEMM floor" is that count at the peak, the time it would take if attention, norms,
softmax and Python cost nothing; naive time / engine floor bounds any engine/naive speed-up on this machine.

Dtypes: a method runs in --dtype (float32: the naive way's numbers) unless written `method:dtype`; `engine:auto`
is the engine at DGR Lens's own default for this device (bfloat16 on GPUs and on CPUs with AVX512-BF16 / AMX,
else float32; it is dropped when that equals --dtype). The default methods are naive, engine, engine:auto and
harness: like for like in fp32, and the engine as a user gets it. The harness runs last: its multi-GiB frees leave
glibc's allocator holding memory (and raise its mmap threshold), which a later method's RSS would count. Rows in another dtype are compared with
the first row for agreement separately (bf16 rounding, not a bug, is what that difference shows).
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

os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")  # as job workers run (dgr_core/jobs/manager.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dgr_core.backends.hf import DEFAULT_BUDGET  # noqa: E402
from dgr_core.data.loaders import load_file  # noqa: E402
from dgr_core.models.loading import ModelSpec, cpu_has_native_bf16, load_model, pick_device_dtype  # noqa: E402
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
    dtype: str
    seconds: float = 0.0
    tokens: int = 0
    peak_bytes: int = 0
    logprobs: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = ""

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


def measure(name: str, dtype: str, fn, encs: list[Encoded]) -> Outcome:
    print(f"[{name}] scoring {len(encs)} samples ...", flush=True)
    with torch.inference_mode(), PeakRSS() as mem:
        start = time.perf_counter()
        logprobs = fn(encs)
        seconds = time.perf_counter() - start
    out = Outcome(name, dtype, seconds, sum(len(e.input_ids) for e in encs), mem.peak, logprobs)
    print(f"[{name}] {out.tokens_per_s:8.1f} tokens/s  {seconds:7.1f} s  peak +{mem.peak / 2**20:7.0f} MiB", flush=True)
    return out


def load_rows(limit: int, seed: int) -> list[dict]:
    df, _ = load_file(STAR1)
    if limit < len(df):
        df = df.sample(n=limit, random_state=seed)
    return df.to_dict("records")


def build_model(args, dtype: str):
    """The model in one dtype, and its tokenizer and label."""
    if args.random_arch:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        config = Qwen2Config(**QWEN2_1_5B, torch_dtype=dtype)
        with torch.device(args.device):
            model = Qwen2ForCausalLM(config).to(getattr(torch, dtype)).eval()
        tokenizer = load_model(ModelSpec("demo")).tokenizer  # any ChatML tokenizer: ids < vocab_size
        return model, tokenizer, "random-weight Qwen2 1.5B architecture"
    loaded = load_model(ModelSpec(args.model, device=args.device, dtype=dtype))
    return loaded.model, loaded.tokenizer, loaded.identity.get("name", args.model)


def parse_methods(text: str, default_dtype: str, device: str) -> list[tuple[str, str]]:
    """`naive,engine:auto,naive:bfloat16` -> [(method, resolved dtype)], without duplicates."""
    out: list[tuple[str, str]] = []
    for token in text.split(","):
        method, _, dtype = token.strip().partition(":")
        if method not in ("naive", "harness", "engine"):
            raise SystemExit(f"unknown method {method!r}: choose naive, harness or engine (optionally :dtype)")
        resolved = pick_device_dtype(device, dtype or default_dtype)[1]
        if (method, resolved) not in out:
            out.append((method, resolved))
    return out


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = f" ({torch.backends.cpu.get_cpu_capability()}{', native bf16' if cpu_has_native_bf16() else ''})"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    env = ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")
                    if k in os.environ)
    return (f"{cpu}{isa}, {os.cpu_count()} cores visible, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads){gpu}; {env}")


def agreement(ref: Outcome, others: list[Outcome]) -> tuple[float, float]:
    """Largest |difference| of any response log-prob, and of any sample's mean NLL, between ref and the others."""
    worst_token = worst_mean = 0.0
    for o in others:
        for key, lp in ref.logprobs.items():
            if len(lp):
                worst_token = max(worst_token, float(np.abs(o.logprobs[key] - lp).max()))
                worst_mean = max(worst_mean, abs(float(o.logprobs[key].mean()) - float(lp.mean())))
    return worst_token, worst_mean


def gemm_peak(dtype: torch.dtype, hidden: int, inner: int, seconds: float = 2.0) -> float:
    """FLOP/s of a dense [512 x hidden] @ [hidden x inner] matmul on this machine (the decoder's MLP shape)."""
    a, b = torch.randn(512, hidden, dtype=dtype), torch.randn(hidden, inner, dtype=dtype)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * 512 * hidden * inner * reps / (time.perf_counter() - start)


@dataclass
class Roofline:
    peaks: dict[str, float]  # dtype name -> measured GEMM FLOP/s
    decoder_flops: float  # weight-matmul FLOPs per token in the decoder
    head_flops: float  # per position where the LM head runs
    tokens: int
    response_positions: int

    def floor(self, method: str, dtype: str) -> float:
        """Seconds the method's weight matmuls take at the measured peak (everything else free)."""
        head_rows = self.response_positions if method == "engine" else self.tokens
        return (self.decoder_flops * self.tokens + self.head_flops * head_rows) / self.peaks[dtype]


def roofline(model, dtypes: set[str], encs: list[Encoded]) -> Roofline:
    head = model.get_output_embeddings()
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    decoder_flops = sum(2 * m.in_features * m.out_features for m in decoder.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    peaks = {d: gemm_peak(getattr(torch, d), cfg.hidden_size, cfg.intermediate_size) for d in sorted(dtypes)}
    return Roofline(peaks, decoder_flops, 2 * head.in_features * head.out_features,
                    sum(len(e.input_ids) for e in encs), sum(int((e.segments[1:] > PROMPT).sum()) for e in encs))


def _find(outcomes: list[Outcome], method: str, dtype: str | None = None) -> Outcome | None:
    return next((o for o in outcomes if o.method == method and dtype in (None, o.dtype)), None)


def target_lines(args, outcomes: list[Outcome]) -> list[str]:
    """The issue's targets: engine vs naive (speed, memory) and vs harness, like for like and at the default."""
    lines = []
    naive, harness = _find(outcomes, "naive", args.dtype), _find(outcomes, "harness", args.dtype)
    for engine in (o for o in outcomes if o.method == "engine"):
        which = f"engine ({engine.dtype}{', the default here' if engine.dtype == args.default_dtype else ''})"
        if naive:
            lines.append(f"- {which} / naive ({naive.dtype}): speed **{engine.tokens_per_s / naive.tokens_per_s:.2f}x**"
                         f" (target >= 3x); peak memory **{engine.peak_bytes / max(naive.peak_bytes, 1):.2f}** of "
                         f"naive's (target <= 0.5)")
        if harness:
            lines.append(f"- {which} / harness ({harness.dtype}): speed "
                         f"**{engine.tokens_per_s / harness.tokens_per_s:.2f}x** (target >= 1.5x); harness batch size "
                         f"{args.batch_size}, engine token budget {args.token_budget}")
    return lines


def agreement_lines(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for dtype in dict.fromkeys(o.dtype for o in outcomes):
        same = [o for o in outcomes if o.dtype == dtype]
        if len(same) > 1:
            token, mean = agreement(same[0], same[1:])
            lines.append(f"- agreement in {dtype} ({', '.join(o.method for o in same)}): largest |difference| "
                         f"{token:.2e} in any response log-prob, {mean:.2e} in any sample's mean NLL")
    ref = outcomes[0]
    for o in outcomes:
        if o.dtype != ref.dtype:
            token, mean = agreement(ref, [o])
            lines.append(f"- {o.name} vs {ref.name}: up to {token:.2e} in a response log-prob, {mean:.2e} in a "
                         f"sample's mean NLL (the rounding of {o.dtype})")
    return lines


def roofline_lines(outcomes: list[Outcome], roof: Roofline) -> list[str]:
    peaks = ", ".join(f"{d} {p / 1e9:,.0f} GFLOP/s" for d, p in roof.peaks.items())
    lines = ["", f"Roofline: measured GEMM peak {peaks}; weight-matmul FLOPs {roof.decoder_flops / 1e6:,.0f} M per "
             f"token in the decoder + {roof.head_flops / 1e6:,.0f} M per LM-head position; {roof.response_positions:,} "
             f"of {roof.tokens:,} positions predict a response token.", "",
             "| method | GEMM floor (s) | measured (s) | floor / measured |", "| --- | ---: | ---: | ---: |"]
    for o in outcomes:
        floor = roof.floor(o.method, o.dtype)
        lines.append(f"| {o.name} | {floor:,.1f} | {o.seconds:,.1f} | {floor / o.seconds:.0%} |")
    naive = _find(outcomes, "naive")
    if naive is not None:
        bounds = "; ".join(f"engine in {d}: **{naive.seconds / roof.floor('engine', d):.2f}x**" for d in roof.peaks)
        lines += ["", f"- upper bound on engine / naive ({naive.dtype}) speed on this machine, with the engine's weight "
                      f"matmuls at the measured peak and attention, norms and softmax free: {bounds}"]
    return lines


def report(args, outcomes: list[Outcome], label: str, n_rows: int, params: int, roof: Roofline | None) -> str:
    lines = [
        f"### {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} — {n_rows} STAR-1 rows, {label} · {args.device}",
        "", f"Command: `{' '.join(['python', *sys.argv])}`  ", f"Machine: {machine()}  ",
        f"Tokens scored per method: {outcomes[0].tokens:,} (prompt + response, chat template)", "",
        "| method | tokens/s | time (s) | peak RSS over baseline (MiB) |", "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {o.name} | {o.tokens_per_s:,.1f} | {o.seconds:,.1f} | {o.peak_bytes / 2**20:,.0f} |" for o in outcomes]
    lines += ["", *target_lines(args, outcomes), *agreement_lines(outcomes)]
    engine = _find(outcomes, "engine")
    if args.peak_tflops and engine:
        flops = 2 * params * engine.tokens_per_s
        lines.append(f"- MFU of {engine.name} (2 x {params / 1e9:.2f}B params FLOPs/token vs {args.peak_tflops} TFLOPS "
                     f"peak): **{100 * flops / (args.peak_tflops * 1e12):.1f}%**")
    if roof is not None:
        lines += roofline_lines(outcomes, roof)
    return "\n".join(lines) + "\n"


def append_result(text: str) -> None:
    header = "## Scoring (benchmarks/bench_scoring.py)\n"
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.is_file() else "# Benchmark results\n\n"
    if header not in current:
        current += "\n" + header + "\n"
    head, tail = current.split(header, 1)
    cut = tail.find("\n### ")  # newest entry first, below the section's prose
    prose, entries = (tail, "") if cut < 0 else (tail[: cut + 1], tail[cut + 1 :])
    RESULTS.write_text(head + header + prose.rstrip("\n") + "\n\n" + text + "\n" + entries, encoding="utf-8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--random-arch", choices=["qwen2-1.5b"], help="random weights of a real architecture (GPU speed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", help="dtype of methods written without one (the naive way: fp32)")
    p.add_argument("--limit", type=int, default=1000, help="STAR-1 rows (sampled with --seed when fewer than 1,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8, help="fixed batch size of the harness method")
    p.add_argument("--token-budget", type=int, default=0, help="tokens per batch of the engine (0: DGR Lens's default)")
    p.add_argument("--methods", default="naive,engine,engine:auto,harness", help="method[:dtype],... (see above)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak (bf16 dense) for MFU; 0 = skip")
    p.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args()
    args.device, args.default_dtype = pick_device_dtype(args.device, "auto")
    args.dtype = pick_device_dtype(args.device, args.dtype)[1]
    args.token_budget = args.token_budget or DEFAULT_BUDGET.get(args.device.split(":")[0], 8192)
    methods = parse_methods(args.methods, args.dtype, args.device)

    models: dict[str, torch.nn.Module] = {}
    for dtype in dict.fromkeys(d for _, d in methods):
        models[dtype], tokenizer, label = build_model(args, dtype)
    pad = tokenizer.pad_token_id or 0
    rows = load_rows(args.limit, args.seed)
    cfg = RenderConfig(max_length=args.max_length)
    encs = [render(r, tokenizer, cfg, key=str(i)) for i, r in enumerate(rows)]
    runners = {"naive": lambda m, e: run_naive(m, e),
               "harness": lambda m, e: run_harness(m, e, args.batch_size, pad),
               "engine": lambda m, e: run_engine(m, e, args.token_budget, pad)}
    with torch.inference_mode():  # warm-up: first-call allocations and kernel selection are not the method's
        for model in models.values():
            run_engine(model, encs[:2], args.token_budget, pad)
    outcomes = [measure(f"{method} ({dtype})", dtype, lambda e, m=method, d=dtype: runners[m](models[d], e), encs)
                for method, dtype in methods]
    for o, (method, _) in zip(outcomes, methods, strict=True):
        o.method = method
    first = next(iter(models.values()))
    roof = roofline(first, set(models), encs) if args.device == "cpu" else None
    text = report(args, outcomes, label, len(rows), sum(p.numel() for p in first.parameters()), roof)
    print("\n" + text)
    if not args.no_write:
        append_result(text)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
