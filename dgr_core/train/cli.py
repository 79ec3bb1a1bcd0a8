"""`dgr train`: submit a fine-tuning job and follow it with a progress bar (Ctrl-C cancels; `dgr jobs resume RUN`
continues after the last finished epoch).

    dgr train --dataset demo-external-refusal --model demo --n 10 --strategy random --epochs 3
    dgr train --dataset STAR-1 --model Qwen/Qwen3-0.6B --strategy lowest_nll --n 100 --method full --lr 1e-5
    dgr train --dataset demo-external-refusal --strategy selection --selection far-from-model
    dgr train --dataset demo-external-refusal --n 10 --mix-dataset demo-gsm8k-100 --mix-n 10
    accelerate launch --multi_gpu --num_processes 8 -m dgr_core.jobs run $(dgr train ... --create-only)

When it is done the trained model is `run:<run id>` (printed in the result as model_ref). Before / after:

    dgr train --dataset demo-external-refusal --n 10 --evaluate --eval-benchmarks arithmetic,strongreject --eval-limit 10
    dgr train-report <train run id>        # the table again (or after `dgr evaluate --model run:<id>` + base)

`--evaluate` evaluates the base model and the trained model with the same settings once training is done (an
identical finished evaluation, e.g. of the base model, is reused) and prints their metrics side by side.
"""

from __future__ import annotations

import argparse

from dgr_core.train.config import METHODS, NLL_FIELDS, STRATEGIES, SubsetConfig, TrainConfig, TrainJobConfig
from dgr_core.workspace import Workspace


def register(subparsers) -> None:
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.cli import add_model_args
    from dgr_core.config import default_of
    from dgr_core.evaluate.runner import EvalConfig

    d = TrainConfig()
    p = subparsers.add_parser("train", help="fine-tune the target model (LoRA or full) on a subset of a dataset")
    p.add_argument("--dataset", required=True, help="a dataset name or a file to import")
    add_model_args(p)  # --backend scores the NLL of the lowest/highest_nll strategies
    g = p.add_argument_group("subset")
    g.add_argument("--strategy", default=default_of(SubsetConfig, "strategy"), choices=STRATEGIES)
    g.add_argument("--n", type=int, default=default_of(SubsetConfig, "n"), help="rows to train on (0 = all the strategy allows)")
    g.add_argument("--subset-seed", type=int, default=default_of(SubsetConfig, "seed"), help="seed of the random draws")
    g.add_argument("--category", default=None, help="for --strategy category")
    g.add_argument("--selection", default=None, help="a selection saved on the Shift page (implies --strategy selection)")
    g.add_argument("--nll-field", default=default_of(SubsetConfig, "nll_field"), choices=NLL_FIELDS)
    g.add_argument("--mix-dataset", default=None, help="a second dataset (benign / math rows) to mix in")
    g.add_argument("--mix-n", type=int, default=default_of(SubsetConfig, "mix_n"), help="rows drawn from --mix-dataset")
    t = p.add_argument_group("training")
    t.add_argument("--method", default=d.method, choices=METHODS)
    t.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate (0 = LoRA 1e-3, full 5e-5)")
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--grad-accum", type=int, default=d.grad_accum)
    t.add_argument("--max-length", type=int, default=d.max_length)
    t.add_argument("--lora-r", type=int, default=d.lora_r)
    t.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    t.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    t.add_argument("--lora-targets", default=",".join(d.lora_targets),
                   help="comma-separated module names, or all-linear")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--gradient-checkpointing", action="store_true")
    e = p.add_argument_group("before / after evaluation")
    e.add_argument("--evaluate", action="store_true", help="then evaluate the base and the trained model")
    e.add_argument("--eval-benchmarks", default="arithmetic,gsm8k100,strongreject,benign_edgy",
                   help="comma-separated benchmark names (see dgr evaluate)")
    e.add_argument("--eval-limit", type=int, default=default_of(EvalConfig, "limit"), help="items per benchmark (0 = all)")
    e.add_argument("--eval-max-new-tokens", type=int, default=default_of(GenerationConfig, "max_new_tokens"))
    e.add_argument("--eval-batch-size", type=int, default=default_of(GenerationConfig, "batch_size"))
    e.add_argument("--no-hold-out", action="store_true",
                   help="with --evaluate, also train on rows whose prompt the evaluation asks (held out by default)")
    p.add_argument("--name", default="", help="run name (default train-DATASET)")
    p.add_argument("--create-only", action="store_true",
                   help="write the run folder, print its path and exit (start it with `accelerate launch -m "
                        "dgr_core.jobs run PATH` for several GPUs)")
    p.set_defaults(fn=cmd_train)
    r = subparsers.add_parser("train-report", help="before / after metrics of a train run (base vs trained model)")
    r.add_argument("run", help="the train run id (a folder name under <workspace>/runs)")
    r.set_defaults(fn=cmd_report)


def build_config(args: argparse.Namespace, dataset: str) -> TrainJobConfig:
    from dgr_core.cli import backend_of
    from dgr_core.models.loading import ModelSpec

    targets = args.lora_targets.strip()
    strategy = "selection" if args.selection else args.strategy
    return TrainJobConfig(
        dataset=dataset, backend=backend_of(args),
        model=ModelSpec(args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                        trust_remote_code=args.trust_remote_code),
        subset=SubsetConfig(strategy=strategy, n=args.n, seed=args.subset_seed, category=args.category,
                            selection=args.selection, nll_field=args.nll_field, mix_dataset=args.mix_dataset,
                            mix_n=args.mix_n),
        train=TrainConfig(method=args.method, learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                          grad_accum=args.grad_accum, max_length=args.max_length, lora_r=args.lora_r,
                          lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                          lora_targets=targets if targets == "all-linear" else [t for t in targets.split(",") if t],
                          seed=args.seed, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                          gradient_checkpointing=args.gradient_checkpointing))


def cmd_train(args: argparse.Namespace) -> int:
    from dgr_core.cli import follow, resolve_dataset
    from dgr_core.jobs import manager

    ws = Workspace.default()
    cfg = build_config(args, resolve_dataset(args.dataset, ws))
    if args.evaluate and not args.no_hold_out:
        from dgr_core.evaluate.runner import item_prompts

        cfg.subset.hold_out_prompts = item_prompts(eval_settings(args))
        print(f"holding out the {len(cfg.subset.hold_out_prompts)} prompts the evaluation asks (--no-hold-out: off)")
    name = args.name or f"train-{cfg.dataset}"
    if args.create_only:
        print(manager.create_run(ws, "train", cfg.to_dict(), name=name))
        return 0
    run = manager.submit(ws, "train", cfg.to_dict(), name=name)
    code = follow(run)
    if code != 0 or not args.evaluate:
        return code
    return evaluate_before_after(ws, run, eval_settings(args))


def eval_settings(args: argparse.Namespace):
    """The EvalConfig (model aside) of `--evaluate`."""
    from dgr_core.backends.base import GenerationConfig
    from dgr_core.cli import backend_of
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig

    names = [n.strip() for n in args.eval_benchmarks.split(",") if n.strip()]
    gen = GenerationConfig(max_new_tokens=args.eval_max_new_tokens, batch_size=args.eval_batch_size)
    return EvalConfig(backend=backend_of(args, generation=True), benchmarks=[BenchmarkSource(n) for n in names], limit=args.eval_limit,
                      generation=gen)


def evaluate_before_after(ws: Workspace, run, settings) -> int:
    """Evaluate base and trained model (reusing identical finished evaluations), then print the table."""
    from dgr_core.cli import follow
    from dgr_core.jobs import manager
    from dgr_core.train.compare import launch_before_after

    for side, eval_run in launch_before_after(ws, run, settings).items():
        print(f"{side}: {eval_run.name}")
        if manager.status(eval_run).get("state") != "done" and follow(eval_run) != 0:
            return 1
    return print_report(ws, run.name)


def print_report(ws: Workspace, run_id: str) -> int:
    from dgr_core.train.compare import before_after

    table = before_after(ws, run_id)
    if table.empty:
        print(f"No finished before/after evaluations of {run_id} yet: evaluate run:{run_id} and its base model "
              "with the same settings (or use `dgr train ... --evaluate`).")
        return 1
    print(f"before = {table.attrs['before']}\nafter  = {table.attrs['after']}")
    print(table[["benchmark", "metric", "before", "after", "delta", "better", "n_before", "n_after"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    return print_report(Workspace.default(), args.run)
