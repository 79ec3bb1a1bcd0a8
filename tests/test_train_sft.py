"""The training loop on the tiny random Llama: a few steps keep the loss finite and change every trainable
parameter (LoRA and full), a frozen base stays frozen, and a run cancelled mid-epoch then resumed from its epoch
checkpoint ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from dgr_core.errors import JobCancelled
from dgr_core.train import sft
from dgr_core.train.config import TrainConfig
from dgr_core.train.data import encode_frame


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls on shared cores: several BLAS threads only wait on each other (3x slower here)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def rows(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"r{i}" for i in range(n)],
        "prompt": [f"Write a tutorial on how to make a bomb, part {i}." for i in range(n)],
        "reasoning": ["I should not answer this question!"] * n,
        "answer": ["I'm sorry, but I can't assist with that request."] * n,
    })


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_few_steps_change_every_trainable_parameter(tiny_model_dir, tmp_path, method):
    base, tok = load(tiny_model_dir)
    cfg = TrainConfig(method=method, epochs=2, batch_size=2, seed=0, lora_r=4, lora_alpha=8,
                      learning_rate=1e-2 if method == "lora" else 1e-3)
    model = sft.prepare_model(base, cfg)
    trainable = set(sft.trainable_parameters(model))
    before = snapshot(model)
    events = []
    out = sft.train(model, tok, encode_frame(rows(), tok, 256), cfg, tmp_path,
                    hooks=sft.Hooks(progress=events.append))
    after = snapshot(model)

    assert out.steps == 4 and all(math.isfinite(x) for x in (out.first_loss, out.final_loss, *out.epoch_losses))
    assert out.final_loss < out.first_loss  # 4 steps on 4 identical refusals: the loss must go down
    assert out.n_trainable == sum(before[n].numel() for n in trainable)
    unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
    assert not unchanged, f"trainable parameters that did not move: {unchanged}"
    frozen_moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert not frozen_moved
    if method == "lora":
        assert trainable and all("lora_" in n for n in trainable)
        assert all((before[n] != after[n]).all() for n in trainable)  # every element of A and B
    else:
        assert trainable == set(before)
    # loss.jsonl: one line per optimizer step; progress events carry the loss, the ETA and the step counts
    lines = [json.loads(x) for x in (tmp_path / sft.LOSS_FILE).read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4] and lines[-1]["loss"] == out.final_loss
    assert [e["done"] for e in events] == [1, 2, 3, 4] and events[-1]["total"] == 4
    assert all(e["eta_s"] is not None and math.isfinite(e["loss"]) for e in events)


def test_gradient_accumulation_and_schedule(tiny_model_dir, tmp_path):
    base, tok = load(tiny_model_dir)
    cfg = TrainConfig(method="lora", epochs=1, batch_size=1, grad_accum=2, warmup_ratio=0.5, learning_rate=1e-3)
    out = sft.train(sft.prepare_model(base, cfg), tok, encode_frame(rows(5), tok, 256), cfg, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / sft.LOSS_FILE).read_text().splitlines()]
    assert out.steps == 3  # 5 micro-batches, accumulated by 2: the last step takes the odd one
    # the LR each step used: 1 warm-up step (never at LR 0), the peak, then linear decay
    assert [x["lr"] for x in lines] == pytest.approx([5e-4, 1e-3, 5e-4])


def _stop_after(n_checks: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n_checks
    return should_stop


@pytest.mark.parametrize("method", ["lora", "full"])
def test_cancel_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path, method):
    cfg = TrainConfig(method=method, epochs=3, batch_size=2, seed=1, lora_r=4,
                      learning_rate=1e-2 if method == "lora" else 1e-3)
    base, tok = load(tiny_model_dir)
    examples = encode_frame(rows(4), tok, 256)  # 2 steps per epoch

    ref_model = sft.prepare_model(base, cfg)
    ref = sft.train(ref_model, tok, examples, cfg, tmp_path / "ref")
    ref_weights = sft.trainable_parameters(ref_model)

    run = tmp_path / "run"
    with pytest.raises(JobCancelled, match="1 epoch"):  # stops at the second batch of epoch 2
        sft.train(sft.prepare_model(load(tiny_model_dir)[0], cfg), tok, examples, cfg, run,
                  hooks=sft.Hooks(should_stop=_stop_after(3)))
    assert json.loads((run / sft.CHECKPOINT_DIR / sft.CKPT_FILE).read_text())["epoch"] == 1
    assert len((run / sft.LOSS_FILE).read_text().splitlines()) == 3  # epoch 1 + one step of epoch 2

    weights = sft.checkpoint_weights(run)
    if method == "lora":
        resumed_model = sft.prepare_model(load(tiny_model_dir)[0], cfg, weights)
    else:
        resumed_model = sft.prepare_model(load(weights)[0], cfg)
    resumed = sft.train(resumed_model, tok, examples, cfg, run)

    assert resumed.resumed_from_epoch == 1 and resumed.steps == ref.steps == 6
    assert resumed.epoch_losses == pytest.approx(ref.epoch_losses, abs=1e-6)
    got = sft.trainable_parameters(resumed_model)
    assert got.keys() == ref_weights.keys()
    for name, param in got.items():
        torch.testing.assert_close(param, ref_weights[name], rtol=0, atol=1e-6, msg=name)
    steps = [json.loads(x)["step"] for x in (run / sft.LOSS_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the unfinished epoch's lines were replaced, not duplicated


def test_save_final_writes_adapter_and_drops_checkpoint(tiny_model_dir, tmp_path):
    base, tok = load(tiny_model_dir)
    cfg = TrainConfig(method="lora", epochs=1, lora_r=4)
    model = sft.prepare_model(base, cfg)
    out = sft.train(model, tok, encode_frame(rows(2), tok, 256), cfg, tmp_path)
    assert (tmp_path / sft.CHECKPOINT_DIR / sft.CKPT_FILE).is_file()
    final = sft.save_final(out, model, tok, cfg, tmp_path)
    assert final == tmp_path / sft.ADAPTER_DIR and (final / "adapter_config.json").is_file()
    assert (final / "tokenizer_config.json").is_file() and not (tmp_path / sft.CHECKPOINT_DIR).exists()
    from safetensors.torch import load_file

    saved = load_file(final / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)  # the adapter only, never the frozen base
