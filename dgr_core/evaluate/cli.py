"""`dgr evaluate`: evaluate a model on reasoning and safety benchmarks as a job, and follow it.

    dgr evaluate --model demo --benchmarks arithmetic,strongreject --limit 10 --max-new-tokens 128
    dgr evaluate --model run:<train run id> --judge meta-llama/Llama-Guard-3-1B
    dgr evaluate --model demo --file my.jsonl --prompt-field question --reference-field answer --file-kind reasoning

Defaults suit the demo model on a CPU: 20 items per benchmark, arithmetic levels 1-2, 256 new tokens, greedy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dgr_core.backends.base import GenerationConfig
from dgr_core.errors import DGRError
from dgr_core.evaluate.runner import DEFAULT_BENCHMARKS, KINDS, REASONING_SUFFIX, BenchmarkSource, EvalConfig
from dgr_core.models.loading import ModelSpec
from dgr_core.workspace import Workspace


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig that `dgr evaluate` submits."""
    sources = [BenchmarkSource(n.strip()) for n in args.benchmarks.split(",") if n.strip()]
    if args.file:
        sources.append(BenchmarkSource(args.file_name or Path(args.file).stem, path=str(Path(args.file).resolve()),
                                       prompt_field=args.prompt_field, reference_field=args.reference_field,
                                       id_field=args.id_field, kind=args.file_kind))
    model = ModelSpec(args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                           seed=args.seed, batch_size=args.batch_size)
    return EvalConfig(model=model, backend=args.backend, benchmarks=sources, limit=args.limit, seed=args.seed,
                      arithmetic_levels=args.levels, generation=gen, judge=args.judge,
                      system_prompt=args.system_prompt, reasoning_suffix=args.suffix)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dgr_core.cli import follow
    from dgr_core.jobs import manager

    cfg = config_from_args(args)
    if not cfg.benchmarks:
        raise DGRError("choose at least one benchmark (--benchmarks or --file)")
    name = args.name or f"eval-{cfg.model.ref.replace('/', '-')}"
    run = manager.submit(Workspace.default(), "evaluate", cfg.to_dict(), name=name)
    return follow(run)


def register(sub: argparse._SubParsersAction) -> None:
    from dgr_core.cli import add_model_args

    p = sub.add_parser("evaluate", help="reasoning accuracy, refusal and over-refusal of a model (a job)")
    add_model_args(p)
    p.add_argument("--benchmarks", default=",".join(DEFAULT_BENCHMARKS),
                   help="comma-separated registered names (math500, aime24, gsm8k100, arithmetic, strongreject, "
                        "xstest, benign_edgy); empty with --file to run only the file")
    p.add_argument("--limit", type=int, default=20, help="items per benchmark (0 = all), a seeded subset")
    p.add_argument("--levels", type=_int_list, default=[1, 2], help="arithmetic levels, e.g. 1,2 (1-5)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="subset and sampling seed")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (= resume unit)")
    p.add_argument("--judge", default="keywords",
                   help="'keywords' or a guard model id/folder (e.g. a Llama-Guard model) for harmful prompts")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--suffix", default=REASONING_SUFFIX, help="appended to reasoning prompts ('' for none)")
    p.add_argument("--file", default=None, help="a JSONL file of prompts to evaluate as one more benchmark")
    p.add_argument("--file-name", default=None, help="its benchmark name (default: the file stem)")
    p.add_argument("--prompt-field", default="prompt")
    p.add_argument("--reference-field", default=None)
    p.add_argument("--id-field", default=None)
    p.add_argument("--file-kind", default="reasoning", choices=list(KINDS))
    p.add_argument("--name", default="", help="run name")
    p.set_defaults(fn=cmd_evaluate)
