"""DGR in miniature: the whole experiment of the DGR paper, small enough for a laptop CPU, as one job.

    dgr demo                                   # the embedded defaults (SmolLM2-135M-Instruct, hf backend, CPU)
    dgr demo --budgets 5 10 20 --seeds 0 1 --lr 3e-4     # the defaults, spelled out

    from dgr_core.jobs import manager
    run = manager.submit(ws, "demo", DemoConfig().to_dict(), name="demo")

Steps (each one a normal child run folder of kind refine / score / train / evaluate, visible on the Runs page):
0. (inline, instant) draw `n_refine` samples of the DirectRefusal-style external set "demo-external-refusal",
   leaving out every prompt the safety evaluation will ask, and save them as the dataset `<tag>-original`;
1. refine them with the target model itself (mode joint, the demo's template: refuse in your own words and say
   why) into `<tag>-refined` (a rewrite needs no <think> block unless `expect_think`: the embedded model writes
   none, and its own words are the point);
2. score the original and the refined set (the distribution shift: NLL under the target model);
3. the sweep: per budget N and seed, LoRA SFT on N samples of each set (the same rows: the refined set keeps the
   original order, and the seeded draw picks the same positions, so sft-refined trains on the rewrites of
   sft-original's rows): 2 x 3 x 2 = 12 runs by default;
4. evaluate the base model and every SFT model with one evaluation config (same items, decoding, seed): 100
   level-1 arithmetic items, AdvBench-50 (harmful, never trained on), a seeded 50 of XSTest's safe prompts.

The children run in this process, one after another (memory is released between them), through `run_inline` (the worker's logic without the device
lock, which the demo job already holds). Progress: every child event is forwarded to the demo run with
"step i/k" in the message and the child's done/total. Cancel: a child stops when its own or the demo's cancel flag
is set. Resume: `steps.json` in the demo run folder maps each step to its child run; a finished child is reused,
an unfinished one is run again in its own folder (so its own resume logic keeps what it had finished).

The package: `config` (DemoConfig and its defaults), `plan` (the steps, each child's config, the draw of step 0),
`children` (running a child in this process, steps.json), `job` (the `demo` kind), `tables` (the result and its
tables), `cli` (`dgr demo`).

result.json (`DemoResult`, dgr_core.jobs.results): datasets, refine summary, shift (mean NLLs), train summaries,
evaluations and a flat `table` of `DemoRow`s (`demo_table` turns it into a DataFrame for the panel and the
benchmark). Each child's result is read back through its kind's Result type (`child_result`), never as a dict.
"""

from __future__ import annotations

from dgr_core.pipeline.children import (
    ChildContext,
    child_result,
    read_steps,
    run_inline,
    step_result,
    step_table,
)
from dgr_core.pipeline.cli import cmd_demo, config_from_args, register
from dgr_core.pipeline.config import (
    DEFAULT_BUDGETS,
    DEFAULT_EPOCHS,
    DEFAULT_EVAL_LIMITS,
    DEFAULT_LR,
    EXTERNAL_DATASET,
    KIND,
    SETS,
    STEPS_FILE,
    DemoConfig,
)
from dgr_core.pipeline.job import (  # registers "demo"
    check,
    describe,
    latest_demo,
    release_memory,
    run,
    validate,
)
from dgr_core.pipeline.plan import (
    Step,
    arm_key,
    arms,
    child_config,
    dataset_names,
    draw_original,
    eval_config,
    eval_prompts,
    parse_arm,
    plan_steps,
    prepare_original,
    refine_config,
    score_config,
    train_config,
)
from dgr_core.pipeline.tables import (
    DEMO_CAVEAT,
    TABLE_COLUMNS,
    demo_caveat,
    demo_pivot,
    demo_table,
    metric_rows,
    split_label,
    summarize,
)

__all__ = [
    "ChildContext", "child_result", "read_steps", "run_inline", "step_result", "step_table", "cmd_demo",
    "config_from_args", "register", "DEFAULT_BUDGETS", "DEFAULT_EPOCHS", "DEFAULT_EVAL_LIMITS", "DEFAULT_LR",
    "EXTERNAL_DATASET", "KIND", "SETS", "STEPS_FILE", "DemoConfig", "check", "describe", "latest_demo",
    "release_memory", "run", "validate", "Step", "arm_key", "arms", "child_config", "dataset_names",
    "draw_original", "eval_config", "eval_prompts", "parse_arm", "plan_steps", "prepare_original",
    "refine_config", "score_config", "train_config", "DEMO_CAVEAT", "TABLE_COLUMNS", "demo_caveat", "demo_pivot",
    "demo_table", "metric_rows", "split_label", "summarize",
]
