"""`dgr demo`: the demo job from the command line, flags defaulting to `DemoConfig`'s fields.

    dgr demo --budgets 5 10 20 --seeds 0 1 --lr 3e-4
"""

from __future__ import annotations

import argparse

from dgr_core.errors import DGRError
from dgr_core.models.loading import ModelSpec
from dgr_core.pipeline.config import DEFAULT_EVAL_LIMITS, KIND, DemoConfig
from dgr_core.workspace import Workspace


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    from dgr_core.cli import backend_of

    model = ModelSpec(args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)
    limits = dict(DEFAULT_EVAL_LIMITS)
    for item in args.eval_limit or []:
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise DGRError(f"--eval-limit takes BENCHMARK=N (e.g. xstest=50), not {item!r}.")
        limits[name] = int(value)
    return DemoConfig(model=model, backend=backend_of(args), n_refine=args.n_refine, budgets=list(args.budgets),
                      seeds=list(args.seeds), epochs=args.epochs, learning_rate=args.lr,
                      refine_max_new_tokens=args.refine_max_new_tokens,
                      eval_max_new_tokens=args.eval_max_new_tokens, eval_limits=limits,
                      arithmetic_levels=list(args.levels), expect_think=args.expect_think,
                      batch_size=args.batch_size)


def cmd_demo(args: argparse.Namespace) -> int:
    from dgr_core.cli import follow
    from dgr_core.jobs import manager

    cfg = config_from_args(args)
    run_dir = manager.submit(Workspace.default(), KIND, cfg.to_dict(), name="demo")
    return follow(run_dir)


def register(subparsers) -> None:
    from dgr_core.cli import add_model_args

    d = DemoConfig()
    p = subparsers.add_parser("demo", help="DGR in miniature: refine, score, an SFT sweep and its evaluation")
    add_model_args(p)
    p.add_argument("--n-refine", type=int, default=d.n_refine, help="samples of the external set to refine")
    p.add_argument("--budgets", type=int, nargs="+", default=d.budgets,
                   help="SFT sizes N: one run per N, seed and set (each at most --n-refine)")
    p.add_argument("--seeds", type=int, nargs="+", default=d.seeds, help="one SFT run per seed, budget and set")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate of the SFT runs")
    p.add_argument("--refine-max-new-tokens", type=int, default=d.refine_max_new_tokens)
    p.add_argument("--eval-max-new-tokens", type=int, default=d.eval_max_new_tokens)
    p.add_argument("--levels", type=int, nargs="+", default=d.arithmetic_levels, help="arithmetic levels (1-5)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per generation batch")
    p.add_argument("--expect-think", action="store_true",
                   help="require a <think> block in every rewrite (for reasoning models; the demo model has none)")
    p.add_argument("--eval-limit", action="append", metavar="BENCHMARK=N",
                   help=f"items per benchmark (repeatable); defaults {DEFAULT_EVAL_LIMITS}")
    p.set_defaults(fn=cmd_demo)
