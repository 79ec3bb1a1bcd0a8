"""Where vLLM pays it is the default (runs in the main environment, no vLLM needed): the sidebar's "auto" backend
picks vLLM for generation only where vLLM is importable and a GPU is present, scoring stays on transformers, and
the sidebar says which backend runs what; the Refine and Evaluate pages launch their jobs on the resolved one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dgr_core.backends import base

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("pays, generation, expected", [(True, True, "vllm"), (True, False, "hf"),
                                                         (False, True, "hf"), (False, False, "hf")])
def test_auto_resolves_to_vllm_for_generation_where_it_pays(monkeypatch, pays, generation, expected):
    monkeypatch.setattr(base, "vllm_pays", lambda: pays)
    assert base.resolve_backend("auto", generation=generation) == expected
    assert base.resolve_backend("hf", generation=generation) == "hf"  # a user's pick is kept
    assert base.resolve_backend("vllm", generation=generation) == "vllm"


def test_vllm_does_not_pay_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert base.vllm_pays() is False


def _app(monkeypatch, pays: bool) -> AppTest:
    monkeypatch.setattr(base, "vllm_pays", lambda: pays)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    return at.run()


def test_sidebar_says_which_backend_runs(demo_ws, monkeypatch):
    at = _app(monkeypatch, pays=False)
    assert not at.exception
    assert at.sidebar.selectbox(key="backend").value == "auto"
    assert any("backend `hf`" in c.value for c in at.sidebar.caption)
    at = _app(monkeypatch, pays=True)
    assert any("generation on `vllm`, scoring on `hf`" in c.value for c in at.sidebar.caption)
    at.sidebar.selectbox(key="backend").select("hf").run()
    assert any("backend `hf`" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("page, key", [("refine", "refine_launch"), ("evaluate", "eval_launch")])
def test_generation_pages_launch_on_vllm_where_it_pays(demo_ws, monkeypatch, page, key):
    from dgr_core.jobs import manager

    monkeypatch.setattr(base, "vllm_pays", lambda: True)
    monkeypatch.setattr(manager, "start", lambda run_dir: 0)  # no worker: only the spec the page writes matters
    at = AppTest.from_file(str(REPO / "views" / f"{page}.py"), default_timeout=60).run()
    assert not at.exception
    at.button(key=key).click().run()
    assert not at.exception
    (run,) = manager.list_runs(demo_ws, page)
    assert run.spec["config"]["backend"] == "vllm"


@pytest.mark.parametrize("pays", [True, False])
def test_the_cli_resolves_auto_as_the_sidebar_does(monkeypatch, pays):
    """`dgr … --backend auto` (the default): generation commands on vLLM where it pays, scoring and training on hf."""
    from dgr_core.cli import build_parser
    from dgr_core.evaluate.cli import config_from_args as eval_config
    from dgr_core.pipeline import config_from_args as demo_config
    from dgr_core.refine.cli import build_config as refine_config
    from dgr_core.train.cli import build_config as train_config
    from dgr_core.train.cli import eval_settings

    monkeypatch.setattr(base, "vllm_pays", lambda: pays)
    gen = "vllm" if pays else "hf"
    parse = build_parser().parse_args
    assert parse(["score", "--dataset", "d"]).backend == "auto"
    assert refine_config(parse(["refine", "--dataset", "d"]), "d").backend == gen
    assert eval_config(parse(["evaluate"])).backend == gen
    train_args = parse(["train", "--dataset", "d"])
    assert (train_config(train_args, "d").backend, eval_settings(train_args).backend) == ("hf", gen)
    assert demo_config(parse(["demo"])).backend == "hf"  # the demo scores its sets: one score cache, hf
    assert refine_config(parse(["refine", "--dataset", "d", "--backend", "hf"]), "d").backend == "hf"
    with pytest.raises(SystemExit):
        parse(["refine", "--dataset", "d", "--backend", "tpu"])
