"""The model layer: resolving references (demo, folder, hub id, run), clear errors offline, device/dtype choice,
identities for cache keys, and (slow) the real embedded SmolLM2 model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dgr_core.backends.base import GenerationConfig, available_backends, get_backend
from dgr_core.errors import DGRError, ModelLoadError
from dgr_core.models.loading import (
    ModelSpec,
    cpu_has_native_bf16,
    load_model,
    load_uncached,
    pick_device_dtype,
    resolve_model_path,
)


def test_unknown_hub_id_offline_fails_with_a_message_that_says_so(ws):
    with pytest.raises(ModelLoadError, match="offline mode") as info:
        resolve_model_path("no-such-org/no-such-model-xyz", ws)
    assert "no-such-org/no-such-model-xyz" in str(info.value)


def test_missing_folder_and_folder_without_config_are_clear_errors(ws, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nothing-here"), ws)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"), ws)


def test_run_reference_errors_name_the_run(ws):
    with pytest.raises(ModelLoadError, match="no run 'nope'"):
        resolve_model_path("run:nope", ws)
    (ws.runs / "unfinished").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="not finished"):
        resolve_model_path("run:unfinished", ws)


def test_offline_flag_set_after_hub_import_is_honoured(ws, monkeypatch):
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; a flag set later must still stop network retries. It
    is passed per call (local_files_only), never by flipping the process-wide flag that other sessions share."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)  # as if imported before the flag was set
    seen = []

    def fetch(*_a, **kw):
        seen.append((kw.get("local_files_only"), hub.HF_HUB_OFFLINE))
        raise OSError("not cached")

    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", fetch)
    with pytest.raises(ModelLoadError, match="offline mode"):
        resolve_model_path("some-org/some-model", ws)
    assert seen == [(True, False)]  # offline for this call only; the global flag never moved


def test_device_and_dtype_are_chosen_automatically(monkeypatch):
    device, dtype = pick_device_dtype()
    if torch.cuda.is_available():
        assert device == "cuda" and dtype in ("bfloat16", "float32")
    else:  # bf16 exactly where the CPU multiplies it natively
        assert (device, dtype) == ("cpu", "bfloat16" if cpu_has_native_bf16() else "float32")
    monkeypatch.setenv("DGR_CPU_BF16", "0")
    assert pick_device_dtype("cpu") == ("cpu", "float32")
    monkeypatch.setenv("DGR_CPU_BF16", "1")
    assert pick_device_dtype("cpu") == ("cpu", "bfloat16")
    assert pick_device_dtype("cpu", "float32") == ("cpu", "float32")  # an explicit dtype always wins
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        pick_device_dtype("cpu", "int3")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            pick_device_dtype("cuda", "auto")


def test_remote_code_is_off_unless_asked():
    assert ModelSpec("some/model").trust_remote_code is False
    assert ModelSpec.from_dict(ModelSpec("x").to_dict()) == ModelSpec("x")


def test_local_folder_loads_with_an_identity_that_tracks_the_weights(ws, tiny_model_dir, tmp_path):
    loaded = load_model(ModelSpec(str(tiny_model_dir)), ws)
    ident = loaded.identity
    assert ident["architecture"] == "LlamaForCausalLM" and ident["n_params"] > 0
    assert len(ident["weights_hash"]) == 16 and len(ident["tokenizer_hash"]) == 16
    assert load_model(ModelSpec(str(tiny_model_dir)), ws) is loaded  # reused in-process

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert load_uncached(ModelSpec(str(copy)), ws).identity["weights_hash"] == ident["weights_hash"]
    model = load_uncached(ModelSpec(str(copy)), ws).model
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(copy)
    assert load_uncached(ModelSpec(str(copy)), ws).identity["weights_hash"] != ident["weights_hash"]


def test_backend_registry(ws, tiny_model_dir):
    assert {"hf", "fake", "vllm"} <= set(available_backends())
    with pytest.raises(DGRError, match="Unknown backend"):
        get_backend("quantum", ModelSpec("demo"), ws)
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(DGRError, match="needs vLLM"):
            get_backend("vllm", ModelSpec(str(tiny_model_dir)), ws)


def test_hf_backend_generates_with_the_chat_template(ws, tiny_model_dir):
    backend = get_backend("hf", ModelSpec(str(tiny_model_dir)), ws)
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.0, seed=0)
    conv = [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "What is 2 + 2?"}]]
    first = backend.generate(conv, cfg)
    again = backend.generate(conv, cfg)
    assert len(first) == 2 and [g.text for g in first] == [g.text for g in again]  # greedy is deterministic
    assert all(g.n_tokens <= 8 for g in first)


# --- the real embedded model (slow: CI runs these too) ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from dgr_core.models.embedded import ensure_converted
    from dgr_core.workspace import REPO_ROOT, Workspace

    ws = Workspace(REPO_ROOT / "cache")  # the converted model is shared with `make prepare`
    folder = ensure_converted(ws)
    return folder, load_model(ModelSpec("demo"), ws)


@pytest.mark.slow
def test_demo_model_is_converted_once_into_a_plain_hf_folder(demo):
    folder, loaded = demo
    marker = json.loads((folder / "dgr_converted.json").read_text())
    assert folder.name.endswith(marker["sha256"][:16])
    assert (folder / "config.json").is_file() and "quantization_config" not in (folder / "config.json").read_text()
    assert loaded.model.config.architectures[0] == "LlamaForCausalLM"
    assert loaded.identity["n_params"] == pytest.approx(134.5e6, rel=0.01)
    assert "<|im_start|>" in loaded.tokenizer.chat_template


@pytest.mark.slow
def test_demo_model_speaks_and_segments_are_exact(demo):
    from dgr_core.scoring.engine import iter_scores
    from dgr_core.scoring.segments import ANSWER, PROMPT, REASONING, RenderConfig, render, token_pieces

    _, loaded = demo
    row = {"prompt": "What is 12 + 30?", "reasoning": "12 + 30 = 42. Café 🙂.", "answer": "The answer is 42."}
    enc = render(row, loaded.tokenizer, RenderConfig(), key="r")
    pieces = token_pieces(loaded.tokenizer, enc.input_ids)
    joined = lambda seg: "".join(p for p, s in zip(pieces, enc.segments, strict=True) if s == seg)  # noqa: E731
    assert joined(REASONING) == row["reasoning"] and joined(ANSWER) == row["answer"]
    [scores] = list(iter_scores(loaded.model, [enc], token_budget=4096, pad_id=loaded.tokenizer.pad_token_id))
    with torch.no_grad():
        ids = torch.from_numpy(enc.input_ids)[None]
        logp = loaded.model(ids).logits.float().log_softmax(-1)[0]
    naive = logp[:-1].gather(1, ids[0, 1:, None])[:, 0].numpy()[enc.segments[1:] > PROMPT]
    np.testing.assert_allclose(scores.logprobs, naive, atol=1e-3)
    # A sensible model finds the arithmetic answer far more likely than uniform over its vocabulary.
    assert -scores.logprobs[scores.segments == ANSWER].mean() < np.log(len(loaded.tokenizer)) / 2
