"""`dgr refine`: submit a refinement job and follow it with a progress bar (Ctrl-C cancels; `dgr jobs resume RUN`
continues without regenerating finished samples).

    dgr refine --dataset demo-external-refusal --model demo --limit 8 --max-new-tokens 256
    dgr refine --dataset STAR-1.json --model Qwen/Qwen3-0.6B --mode separate --template-file my_template.txt
"""

from __future__ import annotations

import argparse

from dgr_core.workspace import Workspace


def register(subparsers) -> None:
    from dgr_core.cli import add_model_args

    p = subparsers.add_parser("refine", help="let the target model rewrite a dataset in its own words (DGR)")
    p.add_argument("--dataset", required=True, help="a dataset name or a file to import")
    add_model_args(p)
    p.add_argument("--mode", default="joint", choices=["joint", "separate", "self"],
                   help="joint: reasoning+answer in one go; separate: two steps; self: answer from scratch")
    p.add_argument("--template-file", default=None, help="a text file with the prompt template (default per mode)")
    p.add_argument("--limit", type=int, default=None, help="refine only the first N samples")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    p.add_argument("--chunk-size", type=int, default=0,
                   help="samples per checkpoint (the resume / cancel unit); 0 = the batch size")
    p.add_argument("--output", default="", help="name of the refined dataset (default DATASET-refined-MODEL)")
    p.add_argument("--expect-think", action=argparse.BooleanOptionalAction, default=None,
                   help="require a closed <think> block in every rewrite (default: yes, except for the demo model, "
                        "which does not reason in think tags)")
    p.add_argument("--min-length-ratio", type=float, default=0.2)
    p.add_argument("--max-length-ratio", type=float, default=20.0)
    p.add_argument("--max-repeat-share", type=float, default=0.5,
                   help="share of repeated word 4-grams above which a rewrite counts as degenerate")
    p.add_argument("--no-refusal-match", action="store_true", help="keep rewrites that change the refusal decision")
    p.add_argument("--judge", default="keywords", help="'keywords' or a Llama-Guard-style judge model id / folder")
    p.add_argument("--no-score", action="store_true",
                   help="do not score the refined set and the whole original dataset afterwards")
    p.set_defaults(fn=cmd_refine)


def build_config(args: argparse.Namespace, dataset: str):
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.cli import backend_of, read_template_file
    from dgr_core.models.loading import ModelSpec
    from dgr_core.refine.engine import default_expect_think
    from dgr_core.refine.filters import FilterConfig
    from dgr_core.refine.job import RefineConfig

    template = read_template_file(args.template_file)
    expect_think = default_expect_think(args.model) if args.expect_think is None else args.expect_think
    return RefineConfig(
        dataset=dataset, backend=backend_of(args, generation=True), mode=args.mode, template=template, limit=args.limit,
        model=ModelSpec(args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                        trust_remote_code=args.trust_remote_code),
        generation=GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                    top_p=args.top_p, seed=args.seed, batch_size=args.batch_size),
        filters=FilterConfig(expect_think=expect_think, min_length_ratio=args.min_length_ratio,
                             max_length_ratio=args.max_length_ratio, max_repeat_share=args.max_repeat_share,
                             refusal_must_match=not args.no_refusal_match, judge=args.judge),
        output_name=args.output, score_after=not args.no_score, chunk_size=args.chunk_size)


def cmd_refine(args: argparse.Namespace) -> int:
    from dgr_core.cli import follow, resolve_dataset
    from dgr_core.jobs import manager

    ws = Workspace.default()
    cfg = build_config(args, resolve_dataset(args.dataset, ws))
    run = manager.submit(ws, "refine", cfg.to_dict(), name=f"refine-{cfg.dataset}")
    return follow(run)
