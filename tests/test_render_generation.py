"""Evaluation generation for thinking models: the prompt is the template's own generation prompt (one <think>,
opened by R1-Distill's template), the stored reply keeps that opened tag, and the answer is read after the LAST
</think>; a reply cut inside its thinking is truncated, never graded on a number from its reasoning."""

from __future__ import annotations

import json

import pytest

from dgr_core.backends.base import GenerationConfig, get_backend
from dgr_core.backends.fake import FakeBackend
from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, read_outputs, run_evaluation
from dgr_core.models.loading import ModelSpec
from dgr_core.render import generation_prompt

SCRIPTS = {
    "closed": ("Two plus two is four.\n</think>\n\nThe answer is 4.", "4"),
    "twice": ("Maybe 5.\n</think>\nNo, wait, recheck: it is 6.\n</think>\n\nThe answer is 6.", "6"),
    "cut": ("Let me see, 7 + 1 = 8 and then", "8"),
}


@pytest.fixture(scope="module")
def r1_tok(tiny_r1_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_r1_dir)


def test_hf_generation_uses_the_templates_generation_prompt(tiny_r1_dir, r1_tok, monkeypatch):
    backend = get_backend("hf", ModelSpec(str(tiny_r1_dir)))
    seen = []
    original = backend.loaded.model.generate

    def spy(**kwargs):
        seen.append(kwargs["input_ids"][0].tolist())
        return original(**kwargs)

    monkeypatch.setattr(backend.loaded.model, "generate", spy)
    conv = [{"role": "user", "content": "What is 2 + 2?"}]
    backend.generate([conv], GenerationConfig(max_new_tokens=3))
    expected = r1_tok(generation_prompt(r1_tok, conv), add_special_tokens=False)["input_ids"]
    assert seen == [expected]
    assert seen[0].count(r1_tok.convert_tokens_to_ids("<think>")) == 1
    assert r1_tok.decode(seen[0]).endswith("<｜Assistant｜><think>\n")


def test_answer_read_after_the_last_think_close(ws, tmp_path, r1_tok):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"id": k, "q": f"Question {k}?", "ref": ref}) + "\n"
                            for k, (_, ref) in SCRIPTS.items()), encoding="utf-8")

    def script(conversation):
        return next(out for k, (out, _) in SCRIPTS.items() if f"Question {k}?" in conversation[-1]["content"])

    backend = FakeBackend(script=script)
    backend.tokenizer = r1_tok  # its generation prompt opens <think>
    cfg = EvalConfig(model=ModelSpec("fake"), backend="fake", limit=0,
                     benchmarks=[BenchmarkSource("mine", path=str(path), prompt_field="q", reference_field="ref",
                                                 id_field="id")],
                     generation=GenerationConfig(max_new_tokens=64))
    run_evaluation(cfg, ws, tmp_path, backend=backend)
    records = {r["id"]: r for r in read_outputs(tmp_path / "outputs.jsonl")}
    assert all(r["response"].startswith("<think>\n") for r in records.values())
    assert records["closed"]["outcome"] == "correct"
    assert records["twice"]["outcome"] == "correct" and records["twice"]["extracted"] == "6"
    # cut inside the thinking: not an answer, although the reasoning ends on the right number
    assert records["cut"]["outcome"] != "correct"
