"""`dgr evaluate`: evaluate a model on reasoning and safety benchmarks as a job, and follow it.

    dgr evaluate --model demo --benchmarks arithmetic,strongreject --limit 10 --max-new-tokens 128
    dgr evaluate --model run:<train run id> --judge meta-llama/Llama-Guard-3-1B
    dgr evaluate --model demo --file my.jsonl --prompt-field question --reference-field answer --file-kind reasoning
    dgr evaluate --model some/R1-distill --decoding reasoning --samples 4 --max-new-tokens 32768   (a GPU)
    dgr grade --benchmark math500 --gold '\\frac{\\sqrt3}{3}' --output 'so $\\boxed{\\frac{1}{\\sqrt3}}$'

Defaults suit the demo model on a CPU: 20 items per benchmark, arithmetic levels 1-2, 256 new tokens, greedy.
`--decoding reasoning` is the reasoning-model protocol of the papers (temperature 0.6, top-p 0.95, k = 4 samples
per item unless --samples says otherwise); explicit --temperature / --top-p override a preset.
`dgr grade` grades one output against one gold answer exactly as an evaluation does, and prints the verdict and
what Math-Verify extracted from each side (exit status 0 = correct, 1 = not correct).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from dgr_core.backends.base import GenerationConfig
from dgr_core.errors import DGRError
from dgr_core.evaluate.runner import (
    DECODING_PRESETS,
    DEFAULT_BENCHMARKS,
    KINDS,
    REASONING_SUFFIX,
    BenchmarkSource,
    EvalConfig,
    apply_preset,
)
from dgr_core.models.loading import ModelSpec
from dgr_core.workspace import Workspace


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig that `dgr evaluate` submits."""
    from dgr_core.cli import backend_of
    sources = [BenchmarkSource(n.strip()) for n in args.benchmarks.split(",") if n.strip()]
    if args.file:
        sources.append(BenchmarkSource(args.file_name or Path(args.file).stem, path=str(Path(args.file).resolve()),
                                       prompt_field=args.prompt_field, reference_field=args.reference_field,
                                       id_field=args.id_field, kind=args.file_kind))
    model = ModelSpec(args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size)
    cfg = EvalConfig(model=model, backend=backend_of(args, generation=True), benchmarks=sources, limit=args.limit, seed=args.seed,
                     arithmetic_levels=args.levels, generation=gen, judge=args.judge, judge_part=args.judge_part,
                     system_prompt=args.system_prompt, reasoning_suffix=args.suffix)
    cfg = apply_preset(cfg, args.decoding, samples=args.samples)
    explicit = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p)) if v is not None}
    return replace(cfg, generation=replace(cfg.generation, **explicit)) if explicit else cfg


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
                        "advbench50, advbench50_pap, xstest, benign_edgy); empty with --file to run only the file")
    p.add_argument("--limit", type=int, default=20, help="items per benchmark (0 = all), a seeded subset")
    p.add_argument("--levels", type=_int_list, default=[1, 2], help="arithmetic levels, e.g. 1,2 (1-5)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--decoding", default="greedy", choices=list(DECODING_PRESETS),
                   help="greedy, or reasoning (temperature 0.6, top-p 0.95, k samples: the papers' protocol)")
    p.add_argument("--samples", type=int, default=None, help="k samples per item (default: 1 greedy, 4 reasoning)")
    p.add_argument("--temperature", type=float, default=None, help="overrides the preset (0 = greedy)")
    p.add_argument("--top-p", type=float, default=None, help="overrides the preset")
    p.add_argument("--seed", type=int, default=0, help="subset and sampling seed")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (= resume unit)")
    p.add_argument("--judge", default="keywords",
                   help="'keywords', a guard model id/folder (e.g. a Llama-Guard model), or "
                        "'strongreject:<chat model>' (the StrongREJECT rubric) for harmful prompts")
    p.add_argument("--judge-part", default="both", choices=["both", "answer", "reasoning"],
                   help="what a model judge reads (the keyword judge always reads the answer)")
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
    register_grade(sub)


def cmd_grade(args: argparse.Namespace) -> int:
    from dgr_core.evaluate.extract import grade_response

    output = _text_arg(args.output)
    gold = _text_arg(args.gold)
    outcome, grade = grade_response(output, gold, finished=not args.truncated, benchmark=args.benchmark)
    report = {"verdict": str(outcome), "benchmark": args.benchmark,
              "extracted_output": grade.pred if grade else [], "extracted_gold": grade.gold if grade else [],
              "rules": grade.rules if grade else [], "error": grade.error if grade else None}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"verdict: {report['verdict']}")
        print(f"output -> {report['extracted_output'] or '(nothing extracted)'}")
        print(f"gold   -> {report['extracted_gold'] or '(not reached: the answer part is missing)'}")
        if report["rules"]:
            print(f"rules: {', '.join(report['rules'])}")
        if report["error"]:
            print(f"note: {report['error']}")
    return 0 if outcome == "correct" else 1


def _text_arg(value: str) -> str:
    """A literal string, '-' for stdin, or @file to read a file."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise DGRError(f"no such file: {path}")
        return path.read_text(encoding="utf-8")
    return value


def register_grade(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grade", help="grade one output against a gold answer (Math-Verify + dataset rules)")
    p.add_argument("--benchmark", default="", help="e.g. math500, aime24, gsm8k100 (picks the dataset rules)")
    p.add_argument("--gold", required=True, help="the gold answer (literal, '-' for stdin, or @file)")
    p.add_argument("--output", required=True, help="the model output, with its think block (literal, -, @file)")
    p.add_argument("--truncated", action="store_true", help="the output was cut at max_new_tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(fn=cmd_grade)
