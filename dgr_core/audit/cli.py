"""`dgr audit`: tag every sample of a dataset with the five risky reasoning patterns (a job, with a progress bar;
Ctrl-C cancels, `dgr jobs resume RUN` continues from the cached chunks).

    dgr audit --dataset STAR-1 --judge heuristic                      # keyword rules, no model, seconds
    dgr audit --dataset STAR-1 --judge Qwen/Qwen3-8B --device cuda    # a judge model through the hf backend
    dgr audit --dataset STAR-1 --judge my-judge --template-file judge.txt --max-new-tokens 2048
"""

from __future__ import annotations

import argparse

from dgr_core.workspace import Workspace


def register(subparsers) -> None:
    from dgr_core.cli import AUTO, BACKEND_CHOICES, BACKEND_HELP
    p = subparsers.add_parser("audit", help="tag samples with the five risky reasoning patterns (2505.15404)")
    p.add_argument("--dataset", required=True, help="a dataset name or a file to import")
    p.add_argument("--judge", default="heuristic",
                   help="'heuristic' (keyword rules, no model) or a chat model: a folder or Hugging Face id")
    p.add_argument("--backend", default=AUTO, choices=BACKEND_CHOICES, help=BACKEND_HELP)
    p.add_argument("--revision", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off by default)")
    p.add_argument("--template-file", default=None,
                   help="the judge prompt with {prompt}, {reasoning}, {answer} (default: the built-in template)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--max-retries", type=int, default=2, help="re-asks after an invalid reply, then 'unparsable'")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-size", type=int, default=32, help="samples per cache write (the resume unit)")
    p.add_argument("--limit", type=int, default=None, help="audit only the first N rows")
    p.add_argument("--retry-unparsable", action="store_true", help="judge cached unparsable samples again")
    p.set_defaults(fn=cmd_audit)


def build_config(args: argparse.Namespace, dataset: str):
    from dgr_core.audit.config import AuditConfig
    from dgr_core.cli import backend_of, read_template_file

    template = read_template_file(args.template_file)
    return AuditConfig(dataset=dataset, judge=args.judge, backend=backend_of(args, generation=True), revision=args.revision,
                       device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                       template=template, max_new_tokens=args.max_new_tokens, max_retries=args.max_retries,
                       batch_size=args.batch_size, chunk_size=args.chunk_size, limit=args.limit,
                       retry_unparsable=args.retry_unparsable)


def cmd_audit(args: argparse.Namespace) -> int:
    from dgr_core.cli import follow, resolve_dataset
    from dgr_core.jobs import manager

    ws = Workspace.default()
    cfg = build_config(args, resolve_dataset(args.dataset, ws))
    run = manager.submit(ws, "audit", cfg.to_dict(), name=f"audit-{cfg.dataset}")
    return follow(run)
