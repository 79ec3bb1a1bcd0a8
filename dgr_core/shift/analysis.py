"""What the shift page shows, computed from caches only: scores, distributions, statistics, maps, rankings.

A thin re-export of the modules it was split into, so `from dgr_core.shift import analysis as A` keeps working:

- `handle`      the target model without its weights (identity + tokenizer, from the backend's describer)
- `scores`      finding and reading cached scores (`load_scored_set`, `ScoredSet`, `dataset_frame`)
- `tables`      distributions, rankings, category breakdown
- `statcache`   shift statistics of pairs of sets, cached on disk
- `sentences`   the output family (sentence embeddings, similarity to the model's own answers)
- `maps`        2-D projections of the embeddings, cached on disk
- `selections`  named selections and the map's box / lasso picks

Nothing here loads the target model's weights; missing scores are computed by `score` jobs, never here.

    handle = model_handle(ModelSpec("demo"), "hf", ws)
    cfg = ScoreConfig(model=ModelSpec("demo"))
    a = load_scored_set(ws, "demo-gsm8k-100", cfg, handle)       # None until a score job has run
    b = load_scored_set(ws, "demo-external-refusal", cfg, handle)
    stats = shift_stats(ws, a, b, segment="total")                 # list[ShiftStat], cached on disk
    print(shift_stats_frame({"b vs a": stats}))

In-process memos (store tables, frames, sets, handles, sentence indexes) are thread-safe (`memo.Memo`): a
Streamlit server shares them across its sessions' threads.
"""

from __future__ import annotations

from dgr_core.errors import DataError
from dgr_core.shift.handle import ModelHandle, model_handle, score_meta
from dgr_core.shift.maps import (
    UMAP_INLINE_MAX,
    cached_projection,
    compute_projection,
    map_points,
    needs_job,
    projection_params,
    top_groups,
)
from dgr_core.shift.scores import (
    CANONICAL_KEEP,
    SEGMENTS,
    ScoredSet,
    ScoreLookup,
    check_segment,
    dataset_frame,
    load_scored_set,
    load_scored_sets,
    load_scores,
    score_lookup,
)
from dgr_core.shift.selections import filter_points, selection_ids
from dgr_core.shift.sentences import (
    SENTENCE_MAX_TOKENS,
    SENTENCE_PACKAGE,
    OutputFamily,
    output_family,
    output_similarity_stat,
    own_answer_pairs,
    sentence_embeddings,
    sentence_missing,
    sentence_model_dir,
    sentence_todo,
)
from dgr_core.shift.statcache import (
    FAMILY_LABELS,
    STATS_VERSION,
    comparison_pairs,
    headline,
    pairwise_stats,
    shift_stats,
    shift_stats_frame,
)
from dgr_core.shift.tables import (
    category_breakdown,
    category_mean_columns,
    delta_vs_reference,
    nll_long,
    nll_summary,
    top_ood,
)

__all__ = [
    "CANONICAL_KEEP", "DataError", "FAMILY_LABELS", "SEGMENTS", "SENTENCE_MAX_TOKENS", "SENTENCE_PACKAGE", "STATS_VERSION",
    "UMAP_INLINE_MAX", "ModelHandle", "OutputFamily", "ScoreLookup", "ScoredSet", "cached_projection",
    "category_breakdown", "category_mean_columns", "check_segment", "comparison_pairs", "compute_projection",
    "dataset_frame", "delta_vs_reference", "filter_points", "headline", "load_scored_set", "load_scored_sets",
    "load_scores", "map_points", "model_handle", "needs_job", "nll_long", "nll_summary", "output_family",
    "output_similarity_stat", "own_answer_pairs", "pairwise_stats", "projection_params", "score_lookup",
    "score_meta", "selection_ids", "sentence_embeddings", "sentence_missing", "sentence_model_dir",
    "sentence_todo", "shift_stats", "shift_stats_frame", "top_groups", "top_ood",
]
