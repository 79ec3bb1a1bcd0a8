"""Supervised fine-tuning of a target model on a few safety samples (LoRA or full), as a job.

- `config`: TrainConfig (how), SubsetConfig (which rows), TrainJobConfig (the job's config);
- `data`: subset strategies (random, lowest/highest NLL, category, saved selection, mixing) and the encoding
  with the loss on the assistant turn only;
- `sft`: the training loop (plain PyTorch through accelerate), checkpoints, saving;
- `job`: the `train` job kind; `cli`: `dgr train`.

A finished run is a model: `ModelSpec("run:<run id>")`.
"""
