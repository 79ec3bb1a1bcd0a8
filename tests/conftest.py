"""Shared fixtures: an isolated workspace per test, the tiny random Llama (built once per session, no network),
and the location of the real datasets in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Before torch loads: spin-waiting OpenMP threads crawl on a shared 2-core CPU (see dgr_core.jobs.manager).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def shared_data_dir() -> Path:
    env = os.environ.get("DGR_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never reach a hub: the embedded default must work without one.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A fresh workspace (DGR_HOME) per test, with the models folder shared so the demo model converts once."""
    from dgr_core.workspace import Workspace

    home = tmp_path / "home"
    monkeypatch.setenv("DGR_HOME", str(home))
    workspace = Workspace(home)
    shared_models = REPO / "cache" / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    (home).mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    return workspace


@pytest.fixture
def demo_ws(ws):
    """`ws` holding the embedded demo datasets (external refusal set, GSM8K-100)."""
    from dgr_core.data.demo import ensure_demo_datasets

    ensure_demo_datasets(ws)
    return ws


SCHEMA0_RUNS = {"train": "20261130-051709-old-train-4887a9ef", "evaluate": "20261130-051740-old-eval-5c0ffee0"}


@pytest.fixture
def schema0_runs(ws) -> dict[str, Path]:
    """`ws` holding two run folders written by the first version of DGR Lens (result schema 0: no result_schema,
    eval signature, decoding or n_items; tests/data/schema0/SOURCE.md): kind -> run folder."""
    import shutil

    out = {}
    for kind, name in SCHEMA0_RUNS.items():
        out[kind] = ws.runs / name
        shutil.copytree(REPO / "tests" / "data" / "schema0" / kind, out[kind])
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Path of the tiny random Llama with a ChatML tokenizer (built in about a second)."""
    from dgr_core.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set DGR_SHARED_DATA)")
    return path


def _tiny_reasoning(tmp_path_factory, family: str, template_file: str) -> Path:
    from dgr_core.models.tiny import build_tiny_reasoning_model

    path = shared_data_dir() / "chat_templates" / template_file
    if not path.is_file():
        pytest.skip(f"chat template not found at {path} (set DGR_SHARED_DATA)")
    return build_tiny_reasoning_model(tmp_path_factory.mktemp(family) / f"tiny-{family}", family,
                                      path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tiny_r1_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2 whose tokenizer carries the real DeepSeek-R1-Distill template and special tokens."""
    return _tiny_reasoning(tmp_path_factory, "r1", "deepseek-r1-distill-qwen.jinja")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2 whose tokenizer carries the real Qwen3 template and special tokens."""
    return _tiny_reasoning(tmp_path_factory, "qwen3", "qwen3.jinja")
