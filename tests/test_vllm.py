"""The vLLM backend for real (`make test-vllm`, in .venv-vllm): against the transformers backend on the embedded
demo model. Prompt log-probs and segment NLLs agree on 40 STAR-1 rows (fp32); greedy text agrees on the refine and
evaluate prompts; sampling honours seed, temperature, top-p and n; prompts beyond the context are refused; score,
refine and evaluate jobs run with `backend: vllm` into their own cache entries; the Refine and Evaluate pages launch
vLLM jobs. One fp32 engine serves the in-process tests (a start costs ~25 s); the two page-launched jobs start
their own, as they do in the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="vLLM is not installed here (`make vllm-env`, then `make test-vllm`)")

from dgr_core.backends import GenerationConfig, get_backend  # noqa: E402
from dgr_core.backends import agreement as A  # noqa: E402
from dgr_core.errors import DGRError  # noqa: E402
from dgr_core.models.loading import ModelSpec  # noqa: E402
from dgr_core.workspace import REPO_ROOT, Workspace  # noqa: E402

FP32 = ModelSpec("demo", dtype="float32")
N_ROWS, MAX_LEN = 40, 384
# Measured on these 40 STAR-1 rows (benchmarks/results_generate.md): fp32 per-token |Δ log-prob| <= 5.7e-5, segment
# NLL <= 3.6e-6. The bounds leave ~10x room for thread-count and kernel differences between machines.
TOKEN_TOL, NLL_TOL = 5e-4, 5e-5


@pytest.fixture(scope="session")
def model_ws() -> Workspace:
    return Workspace(REPO_ROOT / "cache")  # where `dgr prepare` converted the demo model


@pytest.fixture(scope="session")
def vllm_fp32(model_ws):
    return get_backend("vllm", FP32, model_ws)


@pytest.fixture(scope="session")
def hf_fp32(model_ws):
    return get_backend("hf", FP32, model_ws)


@pytest.fixture(scope="session")
def star1(shared_data) -> list[dict]:
    return A.star1_rows(shared_data / "STAR-1" / "data" / "STAR-1.json", N_ROWS)


def test_prompt_logprobs_and_segment_nlls_agree_with_hf(vllm_fp32, hf_fp32, star1):
    enc = A.encode_rows(star1, hf_fp32.tokenizer, MAX_LEN)
    report = A.compare_scores(list(hf_fp32.score(enc)), list(vllm_fp32.score(enc)))
    assert report["samples"] == N_ROWS and report["tokens"] > 5000
    assert report["max_abs_token"] < TOKEN_TOL, report
    assert report["max_abs_nll_reasoning"] < NLL_TOL and report["max_abs_nll_answer"] < NLL_TOL, report


def test_greedy_text_agrees_with_hf_on_refine_and_evaluate_prompts(vllm_fp32, hf_fp32, star1):
    convs = A.refine_conversations(star1[:2]) + A.evaluate_conversations(4)
    cfg = GenerationConfig(max_new_tokens=32, batch_size=8)
    hf, vl = hf_fp32.generate(convs, cfg), vllm_fp32.generate(convs, cfg)
    assert A.compare_texts(hf, vl) == []
    assert [g.n_tokens for g in hf] == [g.n_tokens for g in vl]
    assert [g.finish_reason for g in hf] == [g.finish_reason for g in vl]


def test_sampling_honours_seed_temperature_top_p_and_n(vllm_fp32):
    convs = A.evaluate_conversations(2)
    cfg = GenerationConfig(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=3, n=3)
    first = vllm_fp32.generate(convs, cfg)
    assert len(first) == 6
    assert [g.text for g in vllm_fp32.generate(convs, cfg)] == [g.text for g in first]
    reseeded = vllm_fp32.generate(convs, GenerationConfig(**{**cfg.to_dict(), "seed": 4}))
    assert [g.text for g in reseeded] != [g.text for g in first]
    assert len({g.text for g in first[:3]}) > 1  # the n samples of one prompt differ
    params = vllm_fp32.sampling_params(cfg)
    assert (params.n, params.temperature, params.top_p, params.seed) == (3, 1.0, 0.95, 3)
    narrow = vllm_fp32.generate(convs, GenerationConfig(max_new_tokens=16, temperature=1.0, top_p=1e-6, n=2))
    greedy = vllm_fp32.generate(convs, GenerationConfig(max_new_tokens=16))
    assert [g.text for g in narrow] == [greedy[0].text] * 2 + [greedy[1].text] * 2  # top-p ~0 = greedy


def test_prompts_beyond_the_context_are_refused(vllm_fp32, hf_fp32):
    long = "word " * (vllm_fp32.max_model_len + 10)
    with pytest.raises(DGRError, match=r"context holds 8192"):
        vllm_fp32.generate([[{"role": "user", "content": long}]], GenerationConfig(max_new_tokens=4))
    enc = A.encode_rows([{"id": "long", "prompt": long, "reasoning": "r", "answer": "a"}], hf_fp32.tokenizer, 10**6)
    with pytest.raises(DGRError, match=r"sample 'long' needs \d+ tokens"):
        list(vllm_fp32.score(enc))


def test_identity_names_the_backend_and_matches_the_description(vllm_fp32, hf_fp32, model_ws):
    from dgr_core.backends.base import describe_model

    ident = vllm_fp32.identity()
    assert (ident["backend"], ident["dtype"], ident["device_kind"]) == ("vllm", "float32", "cpu")
    for k in ("ref", "tokenizer_hash", "weights_hash"):
        assert ident[k] == hf_fp32.identity()[k]
    described = describe_model(FP32, "vllm", model_ws).identity  # what pages key score caches on, no engine
    assert {k: ident[k] for k in described} == described


def _run_in_process(ws: Workspace, kind: str, config: dict) -> Any:
    """Create a job exactly as the UI does and run its worker here, so it reuses this session's engine; its
    typed result (dgr_core.jobs.results)."""
    from dgr_core.jobs import manager, worker

    run_dir = manager.create_run(ws, kind, config)
    assert worker.run(run_dir) == 0, manager.log_tail(run_dir)
    return manager.get_run(ws, run_dir.name).result()


def _small_external(ws: Workspace) -> str:
    """The first 4 rows of the demo's external set (the refine job scores its whole input: keep it short)."""
    from dgr_core.data.demo import DEMO_EXTERNAL
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    store.save("ext-4", store.load(DEMO_EXTERNAL).head(4), origin="test")
    return "ext-4"


def test_score_refine_and_evaluate_jobs_run_on_vllm(vllm_fp32, demo_ws):
    from dgr_core.evaluate.runner import EvalConfig
    from dgr_core.refine.job import RefineConfig
    from dgr_core.scoring.api import ScoreConfig

    DEMO_EXTERNAL = _small_external(demo_ws)

    hf_key = _run_in_process(demo_ws, "score", {"dataset": DEMO_EXTERNAL,
                                                "score": ScoreConfig(model=FP32, backend="fake").to_dict()}).op_key
    score = _run_in_process(demo_ws, "score", {"dataset": DEMO_EXTERNAL,
                                               "score": ScoreConfig(model=FP32, backend="vllm").to_dict()})
    assert score.computed == score.n > 0 and score.op_key != hf_key  # the backend is in the cache key
    again = _run_in_process(demo_ws, "score", {"dataset": DEMO_EXTERNAL,
                                               "score": ScoreConfig(model=FP32, backend="vllm").to_dict()})
    assert again.op_key == score.op_key and again.cache_hits == score.n

    refine = RefineConfig(dataset=DEMO_EXTERNAL, model=FP32, backend="vllm", limit=3,
                          generation=GenerationConfig(max_new_tokens=64))
    result = _run_in_process(demo_ws, "refine", refine.to_dict())
    assert result.n == 3, result
    evaluate = EvalConfig(model=FP32, backend="vllm", limit=4, generation=GenerationConfig(max_new_tokens=48))
    result = _run_in_process(demo_ws, "evaluate", evaluate.to_dict())
    assert result.backend == "vllm" and result.model_identity["backend"] == "vllm"


@pytest.mark.parametrize("page", ["refine", "evaluate"])
def test_pages_launch_vllm_jobs(page, demo_ws):
    from streamlit.testing.v1 import AppTest

    from dgr_core.jobs import manager

    small = _small_external(demo_ws)
    at = AppTest.from_file(str(Path(REPO_ROOT) / "views" / f"{page}.py"), default_timeout=120)
    at.session_state["backend"] = "vllm"
    at.session_state["target_model"] = FP32
    at.run()
    assert not at.exception and not at.error
    if page == "refine":
        at.selectbox(key="refine_dataset").select(small).run()
    key = {"refine": "refine_limit", "evaluate": "eval_limit"}[page]
    at.number_input(key=key).set_value(2)
    at.button(key=f"{'eval' if page == 'evaluate' else 'refine'}_launch").click().run()
    assert not at.exception and not at.error
    (run,) = manager.list_runs(demo_ws, page)
    assert run.spec["config"]["backend"] == "vllm"
    assert manager.wait(run.run_dir, timeout=900)["state"] == "done", manager.log_tail(run.run_dir)
    result = run.result()
    if page == "evaluate":
        assert result.backend == "vllm" and result.model_identity["backend"] == "vllm"
    else:
        assert result.n == 2 and result.output_dataset
    at.run()
    assert not at.exception
