"""Supervised fine-tuning of a target model on a few safety samples (LoRA or full), as a job.

- `config`: TrainConfig (how), SubsetConfig (which rows), TrainJobConfig (the job's config);
- `data`: subset strategies (random, lowest/highest NLL, category, saved selection, mixing) and the encoding
  with the loss on the assistant turn only;
- `sft`: the training loop (plain PyTorch through accelerate), checkpoints, saving;
- `job`: the `train` job kind; `cli`: `dgr train`, `dgr train-report`;
- `compare`: evaluate base and trained model with the same settings, and their metrics side by side.

A finished run is a model: `ModelSpec("run:<run id>")` (Evaluate page, `dgr evaluate --model run:<id>`).

    dgr train --dataset demo-external-refusal --model demo --n 10 --epochs 3 --evaluate   # CPU, ~1 min + eval

Several GPUs (see dgr_core.train.job for FSDP / DeepSpeed notes):

    RUN=$(dgr train --dataset STAR-1 --model Qwen/Qwen3-8B --method full --lr 1e-5 --n 1000 --create-only)
    accelerate launch --multi_gpu --num_processes 8 -m dgr_core.jobs run "$RUN"
    accelerate launch --config_file fsdp.yaml -m dgr_core.jobs run "$RUN"
"""
