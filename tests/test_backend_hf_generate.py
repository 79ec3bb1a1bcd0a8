"""Batched transformers generation (dgr_core.backends.batching): batched greedy text equals one prompt at a time,
results come back in order, n samples per prompt, the seed is honoured, rows stop at end of turn."""

from __future__ import annotations

import pytest

from dgr_core.backends import GenerationConfig, get_backend
from dgr_core.backends.batching import cut_at_stop, left_pad, length_sorted_batches
from dgr_core.models.loading import ModelSpec

PROMPTS = ["Hi", "What is 2 + 2? Explain each step slowly and carefully, please.", "Name a colour.",
           "Tell me a long story about a cat who learns to read, with three chapters.", "Why?"]


def _convs(prompts=PROMPTS):
    return [[{"role": "user", "content": p}] for p in prompts]


def test_length_sorted_batches_cover_every_index_once_longest_first():
    batches = length_sorted_batches([3, 9, 1, 9, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]
    assert length_sorted_batches([], 4) == [] and length_sorted_batches([2, 1], 0) == [[0], [1]]


def test_left_pad_and_cut_at_stop():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids == [[5, 6, 7], [0, 0, 8]] and mask == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_stop([4, 5, 2, 9], {2}) == ([4, 5], "stop")
    assert cut_at_stop([4, 5], {2}) == ([4, 5], "length")


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir, tmp_path_factory):
    from dgr_core.workspace import Workspace

    return get_backend("hf", ModelSpec(str(tiny_model_dir), dtype="float32"),
                       Workspace(tmp_path_factory.mktemp("ws")))


def test_batched_greedy_equals_one_prompt_at_a_time_in_order(tiny_backend):
    cfg = GenerationConfig(max_new_tokens=12, batch_size=8)
    batched = tiny_backend.generate(_convs(), cfg)
    single = [tiny_backend.generate(_convs([p]), GenerationConfig(max_new_tokens=12, batch_size=1))[0]
              for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.n_tokens for g in batched] == [g.n_tokens for g in single]
    done: list[int] = []
    tiny_backend.generate(_convs(), GenerationConfig(max_new_tokens=4, batch_size=2), on_done=done.append)
    assert done == [2, 2, 1]


def test_n_samples_seed_and_temperature(tiny_backend):
    cfg = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.95, seed=7, n=3)
    first = tiny_backend.generate(_convs(PROMPTS[:2]), cfg)
    assert len(first) == 6
    again = tiny_backend.generate(_convs(PROMPTS[:2]), cfg)
    assert [g.text for g in first] == [g.text for g in again]  # same seed, same samples
    other = tiny_backend.generate(_convs(PROMPTS[:2]), GenerationConfig(**{**cfg.to_dict(), "seed": 8}))
    assert [g.text for g in other] != [g.text for g in first]
    assert len({g.text for g in first[:3]}) > 1  # a random tiny model at T=1 does not repeat itself
    greedy = tiny_backend.generate(_convs(PROMPTS[:1]), GenerationConfig(max_new_tokens=6, n=2))
    assert len(greedy) == 2 and greedy[0].text == greedy[1].text


def test_rows_stop_at_end_of_turn(tiny_backend):
    tok = tiny_backend.tokenizer
    stops = tiny_backend._stops()
    assert tok.eos_token_id in stops
    gens = tiny_backend.generate(_convs(), GenerationConfig(max_new_tokens=40, batch_size=5))
    for g in gens:
        assert (g.finish_reason == "stop") == (g.n_tokens < 40)
        assert tok.eos_token not in g.text
