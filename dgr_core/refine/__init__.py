"""DGR refinement: the target model rewrites a safety dataset in its own words.

- `templates` the editable prompt per mode (joint / separate / self), its check, rendering, hash and preview
- `filters`   pure checks on each rewrite; a failed rewrite falls back to the original sample
- `engine`    generation per chunk, parsing, filtering, the refined table with provenance
- `job`       the `refine` job kind (RefineConfig), resumable and cancellable; `cli` the `dgr refine` command

    dgr refine --dataset demo-external-refusal --model demo --limit 8
"""
