"""Jobs: anything that touches a model for more than a moment runs in its own process.

A run folder holds `job.json` (the frozen spec, the worker's only input), `status.json` (replaced atomically),
`progress.jsonl` (appended), `log.txt`, the outputs, and `result.json` (written last). Start one with
`dgr_core.jobs.manager.submit` or from a terminal / Slurm script / `accelerate launch`:

    python -m dgr_core.jobs run <run-dir>

Cancel = a `cancel` flag file plus SIGTERM to the process group. Kinds register in `dgr_core.jobs.kinds`.
"""
