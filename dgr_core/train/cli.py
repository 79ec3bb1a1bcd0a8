"""`dgr train`: submit a fine-tuning job and follow it with a progress bar (Ctrl-C cancels; `dgr jobs resume RUN`
continues after the last finished epoch).

    dgr train --dataset demo-external-refusal --model demo --n 10 --strategy random --epochs 3
    dgr train --dataset STAR-1 --model Qwen/Qwen3-0.6B --strategy lowest_nll --n 100 --method full --lr 1e-5
    dgr train --dataset demo-external-refusal --strategy selection --selection far-from-model

When it is done the trained model is `run:<run id>` (printed in the result as model_ref).
"""

from __future__ import annotations

import argparse

from dgr_core.train.config import METHODS, NLL_FIELDS, STRATEGIES, SubsetConfig, TrainConfig, TrainJobConfig
from dgr_core.workspace import Workspace


def register(subparsers) -> None:
    from dgr_core.cli import add_model_args

    d = TrainConfig()
    p = subparsers.add_parser("train", help="fine-tune the target model (LoRA or full) on a subset of a dataset")
    p.add_argument("--dataset", required=True, help="a dataset name or a file to import")
    add_model_args(p)  # --backend scores the NLL of the lowest/highest_nll strategies
    g = p.add_argument_group("subset")
    g.add_argument("--strategy", default="random", choices=STRATEGIES)
    g.add_argument("--n", type=int, default=10, help="rows to train on (0 = all the strategy allows)")
    g.add_argument("--subset-seed", type=int, default=0, help="seed of the random draws")
    g.add_argument("--category", default=None, help="for --strategy category")
    g.add_argument("--selection", default=None, help="a selection saved on the Shift page (implies --strategy selection)")
    g.add_argument("--nll-field", default="nll_total", choices=NLL_FIELDS)
    g.add_argument("--mix-dataset", default=None, help="a second dataset (benign / math rows) to mix in")
    g.add_argument("--mix-n", type=int, default=0, help="rows drawn from --mix-dataset")
    t = p.add_argument_group("training")
    t.add_argument("--method", default=d.method, choices=METHODS)
    t.add_argument("--lr", type=float, default=0.0, help="peak learning rate (0 = LoRA 1e-3, full 5e-5)")
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
    p.add_argument("--name", default="", help="run name (default train-DATASET)")
    p.set_defaults(fn=cmd_train)


def build_config(args: argparse.Namespace, dataset: str) -> TrainJobConfig:
    from dgr_core.models.loading import ModelSpec

    targets = args.lora_targets.strip()
    strategy = "selection" if args.selection else args.strategy
    return TrainJobConfig(
        dataset=dataset, backend=args.backend,
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
    run = manager.submit(ws, "train", cfg.to_dict(), name=args.name or f"train-{cfg.dataset}")
    return follow(run)
