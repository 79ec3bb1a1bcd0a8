"""The shift page's core (`dgr_core.shift.analysis` and the `project` / `embed_sentences` jobs) against the real
score cache: scores are written by `score_dataset` (fake backend, and the tiny random Llama through `hf`) and read
back without loading a model; statistics are cached; a planted shift is found and a split of one source is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dgr_core.backends.base import get_backend
from dgr_core.data.store import DatasetStore
from dgr_core.errors import SpecError
from dgr_core.jobs import manager
from dgr_core.jobs.context import JobContext
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.api import ScoreConfig, score_dataset, score_frame
from dgr_core.shift import analysis as A
from dgr_core.shift import job as shift_job
from dgr_core.shift import sentences, statcache
from dgr_core.shift import stats as S

N = 24
CATS = ["math", "logic", "misc"]
FAKE = ScoreConfig(model=ModelSpec("demo"), backend="fake")
NO_KEY = ("name", "n_params", "architecture")  # identity fields the cache key leaves out


def frames(n: int = N) -> dict[str, pd.DataFrame]:
    """The model's own answers, an external set in foreign words, and its refinement (parent_id -> external)."""
    prompts = [f"What is {i} plus {i + 1}?" for i in range(n)]
    base = {"prompt": prompts, "source": "test", "category": [CATS[i % 3] for i in range(n)]}
    own = pd.DataFrame({**base, "id": [f"own-{i}" for i in range(n)],
                        "reasoning": "Add the numbers step by step.",
                        "answer": [f"The answer is {2 * i + 1}." for i in range(n)]})
    ext = pd.DataFrame({**base, "id": [f"ext-{i}" for i in range(n)],
                        "reasoning": "I should not answer this question!",
                        "answer": [f"Quixotic zephyrs {i} juxtapose labyrinthine phantasmagoria." for i in range(n)]})
    ref = pd.DataFrame({**base, "id": [f"ref-{i}" for i in range(n)], "parent_id": ext["id"],
                        "reasoning": "Add the numbers step by step, then check the sum.",
                        "answer": [f"The answer is {2 * i + 1}, I think." for i in range(n)]})
    return {"own": own, "external": ext, "refined": ref}


def save_and_score(ws, cfg: ScoreConfig = FAKE, backend=None) -> dict[str, A.ScoredSet]:
    store = DatasetStore(ws)
    for name, df in frames().items():
        store.save(name, df, origin="test")
        score_dataset(ws, name, cfg, backend=backend)
    return {name: A.load_scored_set(ws, name, cfg) for name in frames()}


@pytest.fixture
def sets(ws) -> dict[str, A.ScoredSet]:
    return save_and_score(ws)


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    return get_backend("hf", ModelSpec(str(tiny_model_dir)), None)


# --- reading the score cache ------------------------------------------------------------------------------------


def test_nothing_is_read_until_every_sample_is_scored(ws):
    store = DatasetStore(ws)
    df = frames()["own"]
    store.save("own", df, origin="test")
    assert A.load_scored_set(ws, "own", FAKE) is None and A.load_scores(ws, "own", FAKE) is None
    assert A.score_lookup(ws, "own", FAKE).n_cached == 0
    score_frame(ws, df.iloc[:10], FAKE)  # what a cancelled score job leaves behind
    look = A.score_lookup(ws, "own", FAKE)
    assert (look.n_cached, look.n_rows, look.complete) == (10, N, False)
    assert A.load_scored_set(ws, "own", FAKE) is None
    assert A.load_scored_sets(ws, ["own"], FAKE) == ({}, ["own"])
    direct = score_dataset(ws, "own", FAKE)
    scored = A.load_scored_set(ws, "own", FAKE)
    got, missing = A.load_scored_sets(ws, ["own"], FAKE)
    assert got["own"] is scored and missing == []  # memoized: a page rerun reads nothing again
    assert A.score_lookup(ws, "own", FAKE).complete
    assert scored.frame["id"].tolist() == df["id"].tolist()  # dataset order, whatever the chunk order
    for col in ("nll_reasoning", "nll_answer", "nll_total", "n_tokens_total"):
        np.testing.assert_allclose(scored.frame[col].to_numpy(float), direct.table[col].to_numpy(float))
    np.testing.assert_array_equal(scored.embeddings(), direct.embeddings())
    arrays = scored.result.arrays("own-3")
    np.testing.assert_array_equal(arrays.logprobs, direct.arrays("own-3").logprobs)


def test_other_settings_or_backend_are_a_different_cache(sets, ws):
    assert A.load_scored_set(ws, "own", ScoreConfig(model=ModelSpec("demo"), backend="fake", max_length=64)) is None
    assert A.load_scored_set(ws, "own", ScoreConfig(model=ModelSpec("other"), backend="fake")) is None


def test_handle_identity_is_the_backends_without_loading_it(ws, tiny_backend, tiny_model_dir):
    fake = get_backend("fake", ModelSpec("demo"), ws)
    handle = A.model_handle(ModelSpec("demo"), "fake", ws)
    assert handle.identity == fake.identity()
    tiny = A.model_handle(ModelSpec(str(tiny_model_dir)), "hf", ws)
    want = {k: v for k, v in tiny_backend.identity().items() if k not in NO_KEY}
    assert {k: v for k, v in tiny.identity.items() if k not in NO_KEY} == want
    assert tiny.tokenizer("héllo")["input_ids"] == tiny_backend.tokenizer("héllo")["input_ids"]


# --- statistics --------------------------------------------------------------------------------------------------


def test_shift_stats_equal_the_direct_computation_and_are_cached(sets, ws, monkeypatch):
    own, ext = sets["own"], sets["external"]
    stats = A.shift_stats(ws, own, ext, segment="answer")
    direct = S.compare_sets(own.nll("answer"), ext.nll("answer"), own.embeddings(), ext.embeddings(), seed=0)
    assert [s.to_dict() for s in stats] == [s.to_dict() for s in direct]
    assert len(list((ws.scores / "shift").glob("*.json"))) == 2  # one file per family

    calls = []
    real = statcache.compare_sets

    def spy(nll_a, nll_b, emb_a, emb_b, **kw):
        calls.append(("likelihood" if nll_a is not None else "") + ("embedding" if emb_a is not None else ""))
        return real(nll_a, nll_b, emb_a, emb_b, **kw)

    monkeypatch.setattr(statcache, "compare_sets", spy)
    again = A.shift_stats(ws, own, ext, segment="answer")
    assert [s.to_dict() for s in again] == [s.to_dict() for s in stats] and calls == []
    # Another segment recomputes only the (cheap) likelihood family; the embedding one does not depend on it.
    other = A.shift_stats(ws, own, ext, segment="reasoning")
    assert calls == ["likelihood"]
    assert [s.to_dict() for s in other if s.family == "embedding"] == \
        [s.to_dict() for s in stats if s.family == "embedding"]
    assert A.shift_stats(ws, own, ext, seed=1) and calls[-2:] == ["likelihood", "embedding"]


def test_planted_likelihood_shift_is_found_and_a_split_of_one_set_is_not(sets, ws):
    stats = {s.key: s for s in A.shift_stats(ws, sets["own"], sets["external"], segment="answer")}
    delta = stats["mean_delta_nll"]
    assert delta.value > 0 and delta.ci_low > 0 and delta.p_value < 1e-3
    assert stats["perplexity_ratio"].ci_low > 1
    own = sets["own"].nll("answer")
    null = S.mean_delta_nll(own[::2], own[1::2])
    assert null.ci_low <= 0 <= null.ci_high and null.p_value > 0.05
    assert abs(null.value) < 0.2 * delta.value


def test_pairwise_labels_and_pairs(sets, ws):
    assert A.comparison_pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c")]
    assert A.comparison_pairs(["a", "b", "c"], all_pairs=True) == [("a", "b"), ("a", "c"), ("b", "c")]
    results = A.pairwise_stats(ws, sets, segment="total")
    assert list(results) == ["external vs own", "refined vs own"]
    frame = A.shift_stats_frame(results)
    assert set(frame["comparison"]) == set(results)
    assert frame.groupby("comparison")["family"].first().eq("likelihood").all()  # ΔNLL leads
    assert frame["what it measures"].str.len().gt(20).all()
    with pytest.raises(A.DataError, match="segment"):
        A.pairwise_stats(ws, sets, segment="prompt")


def test_tiny_model_tells_two_text_sources_apart_but_not_two_halves_of_one(ws, shared_data, tiny_backend,
                                                                           tiny_model_dir):
    from dgr_core.data.demo import gsm8k_100
    from dgr_core.data.loaders import load_file

    star, _ = load_file(shared_data / "STAR-1" / "data" / "STAR-1.json")
    store = DatasetStore(ws)
    store.save("star-even", star.iloc[0:48:2], origin="test")
    store.save("star-odd", star.iloc[1:48:2], origin="test")
    store.save("gsm8k", gsm8k_100().iloc[:24], origin="test")
    cfg = ScoreConfig(model=ModelSpec(str(tiny_model_dir)), backend="hf", max_length=128)
    for name in ("star-even", "star-odd", "gsm8k"):
        score_dataset(ws, name, cfg, backend=tiny_backend)
    got = {n: A.load_scored_set(ws, n, cfg) for n in ("star-even", "star-odd", "gsm8k")}
    shifted = {s.key: s for s in A.shift_stats(ws, got["star-even"], got["gsm8k"])}
    same = {s.key: s for s in A.shift_stats(ws, got["star-even"], got["star-odd"])}
    for key in ("mmd_rbf", "energy_distance", "centroid_distance", "centroid_cosine_distance"):
        assert shifted[key].p_value < 0.01, key
        assert same[key].p_value > 0.05, key
        assert same[key].value < shifted[key].value, key
    assert shifted["classifier_auc"].value > 0.8 and shifted["classifier_auc"].ci_low > 0.5
    assert same["classifier_auc"].ci_low <= 0.5 <= same["classifier_auc"].ci_high


# --- distributions, rankings, categories -------------------------------------------------------------------------


def test_distribution_tables(sets):
    long = A.nll_long(sets)
    assert set(long["segment"]) == set(A.SEGMENTS) and len(long) == 3 * 3 * N  # every row has all segments
    for (name, seg), part in long.groupby(["dataset", "segment"]):
        np.testing.assert_allclose(part["nll"].to_numpy(), sets[name].nll(seg))
    summary = A.nll_summary(sets).set_index(["dataset", "segment"])
    assert summary.loc[("external", "answer"), "mean"] == pytest.approx(sets["external"].nll("answer").mean())


def test_rankings_and_category_shift(sets):
    top = A.top_ood(sets, "answer", n=5)
    everything = np.concatenate([s.nll("answer") for s in sets.values()])
    assert top["nll_answer"].is_monotonic_decreasing and top["nll_answer"].iloc[0] == everything.max()
    assert (top["dataset"] == "external").all()

    delta = A.delta_vs_reference(sets["external"], sets["refined"], "total")
    assert delta.attrs["paired_by"] == "parent_id" and len(delta) == N
    assert delta["delta_nll_total"].is_monotonic_decreasing
    np.testing.assert_allclose(delta["delta_nll_total"], delta["nll_total_b"] - delta["nll_total_a"])
    ext_id = delta["id (external)"].iloc[0]
    assert delta["id (refined)"].iloc[0] == ext_id.replace("ext", "ref")

    breakdown = A.category_breakdown(sets, "answer")
    assert list(breakdown.index) == sorted(CATS)
    assert A.category_mean_columns(breakdown) == ["own", "external", "refined"]
    frame = sets["external"].frame
    want = frame[frame["category"] == "logic"]["nll_answer"].mean() - \
        sets["own"].frame.query("category == 'logic'")["nll_answer"].mean()
    assert breakdown.loc["logic", "Δ external"] == pytest.approx(want)
    assert breakdown.loc["logic", "n (own)"] == N // 3


# --- map, projections, selections ------------------------------------------------------------------------------


def test_map_points_and_cached_projection(sets, ws):
    X, points = A.map_points(sets, "answer")
    assert X.shape[0] == len(points) == 3 * N
    assert points.groupby("dataset", sort=False).size().to_dict() == {"own": N, "external": N, "refined": N}
    assert A.cached_projection(ws, X, "pca") is None
    proj = A.compute_projection(ws, X, "pca")
    again = A.cached_projection(ws, X, "pca")
    assert again is not None and again.method == "pca"
    np.testing.assert_array_equal(again.coords, proj.coords)
    assert A.cached_projection(ws, X, "pca", seed=1) is None and A.cached_projection(ws, X[:-1], "pca") is None
    assert A.needs_job("umap", A.UMAP_INLINE_MAX + 1) and not A.needs_job("pca", 10**6)
    assert not A.needs_job("umap", A.UMAP_INLINE_MAX)


def test_project_job_fills_the_cache_the_page_reads(sets, ws):
    config = {"datasets": ["own", "refined"], "score": FAKE.to_dict(), "method": "pca"}
    cfg = shift_job.validate_project(config)
    run_dir = manager.create_run(ws, "project", config)
    result = shift_job.run_project(cfg, JobContext(run_dir, ws))
    assert result["n"] == 2 * N and result["method"] == "pca"
    X, _ = A.map_points({n: sets[n] for n in ("own", "refined")})
    assert A.cached_projection(ws, X, "pca") is not None
    with pytest.raises(SpecError, match="config.method"):
        shift_job.validate_project({**config, "method": "tsne"})
    DatasetStore(ws).save("unscored", frames()["own"].assign(answer="new text"), origin="test")
    with pytest.raises(A.DataError, match="not fully scored"):
        shift_job.run_project(shift_job.validate_project({**config, "datasets": ["unscored"]}),
                              JobContext(run_dir, ws))


def test_map_colours_group_rare_categories():
    values = pd.Series(["a"] * 5 + ["b"] * 4 + ["c", "d", "", None])
    assert A.top_groups(values, 10).tolist() == ["a"] * 5 + ["b"] * 4 + ["c", "d", "(none)", "(none)"]
    grouped = A.top_groups(values, 3)
    assert grouped.value_counts().to_dict() == {"a": 5, "b": 4, "other (3 more)": 4}


def test_dataset_frame_is_read_once_until_the_dataset_changes(ws):
    store = DatasetStore(ws)
    store.save("own", frames()["own"], origin="test")
    first = A.dataset_frame(ws, "own")
    assert A.dataset_frame(ws, "own") is first
    store.save("own", frames()["own"].assign(answer="changed"), origin="test")
    assert (A.dataset_frame(ws, "own")["answer"] == "changed").all()


def test_selection_from_chart_points_filters_the_table(sets):
    _, points = A.map_points(sets)
    chart = [{"customdata": ["own", "own-1"]}, {"customdata": ["refined", "ref-2"]},
             {"customdata": ["own", "own-1"]}, {"x": 1}]
    selected = A.selection_ids(chart)
    assert selected == {"own": ["own-1"], "refined": ["ref-2"]}
    shown = A.filter_points(points, selected)
    assert list(zip(shown["dataset"], shown["id"], strict=True)) == [("own", "own-1"), ("refined", "ref-2")]
    assert len(A.filter_points(points, {})) == len(points)


# --- output family -----------------------------------------------------------------------------------------------


def _fake_encode(texts: list[str], batch_size: int) -> np.ndarray:
    """Bag of words hashed into 64 dims: answers sharing words are close, as with a sentence model."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace(".", " ").replace(",", " ").split():
            out[i, hash(word) % 64] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_output_family_waits_for_the_embed_job_then_ranks_refined_above_external(sets, ws, monkeypatch):
    monkeypatch.setattr(sentences, "_encode", _fake_encode)
    others = {n: sets[n].frame for n in ("external", "refined")}
    fam = A.output_family(ws, others, "own")
    assert fam.stats == {} and fam.to_embed == ["external", "refined"] and fam.n_missing == 3 * N
    config = {"datasets": ["own", "external", "refined"], "column": "answer"}
    run_dir = manager.create_run(ws, "embed_sentences", config)
    result = shift_job.run_embed(shift_job.validate_embed(config), JobContext(run_dir, ws))
    assert result["computed"] == 3 * N
    fam = A.output_family(ws, others, "own")
    assert fam.to_embed == [] and fam.n_missing == 0
    ext = fam.stats["external vs own (own answers)"][0]
    ref = fam.stats["refined vs own (own answers)"][0]
    assert ref.value > ext.value and ref.family == "output" and "paired by prompt" in ref.note
    assert ref.effect_size > 0 and ref.p_value < 0.05  # "The answer is N" matches its own prompt's answer
    DatasetStore(ws).save("elsewhere", frames()["own"].assign(prompt="Another prompt"), origin="test")
    assert A.output_family(ws, {"elsewhere": DatasetStore(ws).load("elsewhere")}, "own").unpaired == ["elsewhere"]


def test_bundled_sentence_model_runs_offline(ws):
    texts = ["I'm sorry, but I can't help with that request.", "Sorry, I cannot assist with this.",
             "The answer is 72."]
    emb = A.sentence_embeddings(texts, ws)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = emb @ emb.T
    assert cos[0, 1] > cos[0, 2] + 0.2  # two refusals are closer than a refusal and a number
    assert A.sentence_missing(texts, ws) == 0  # cached per text
    np.testing.assert_array_equal(A.sentence_embeddings(texts[::-1], ws), emb[::-1])
