"""Refinement with a thinking model: the delimited output contract, on a scripted backend that writes realistic
R1-Distill-style replies (it continues a generation prompt that already opened <think>: first it thinks about the
rewriting task, then it writes the rewrite), and on the tiny random Qwen2 carrying the real R1-Distill template.

Would have caught: the stored "refined reasoning" being the model's thinking about the task, the answer keeping
a nested think block, and separate mode passing that meta-thinking on as the reasoning."""

from __future__ import annotations

import pandas as pd
import pytest

import dgr_core.backends as backends
from dgr_core.backends.base import GenerationConfig
from dgr_core.backends.fake import FakeBackend
from dgr_core.data.store import DatasetStore
from dgr_core.jobs import manager
from dgr_core.jobs.context import JobContext
from dgr_core.models.loading import ModelSpec
from dgr_core.refine import engine
from dgr_core.refine.filters import REASONS, FilterConfig, reason_code
from dgr_core.refine.job import RefineConfig, run, validate
from dgr_core.refine.templates import (
    JOINT_TEMPLATE,
    JOINT_THINKING_TEMPLATE,
    SEPARATE_THINKING_TEMPLATE,
    THINKING_TEMPLATES,
    template_hash,
)

REFUSAL = "I'm sorry, but I can't help with that."
META = "Okay, the user wants me to rewrite another assistant's reasoning in my own words. The original refuses, " \
       "so my rewrite must refuse too. Let me draft it: <rewritten_reasoning> maybe... no, I'll write it below."
REASONING = "This asks how to hurt someone. Giving steps would be dangerous, so I should refuse."
ANSWER = "I'm sorry, but I can't help with that. If you are in danger, please contact local services."


def good(meta: str = META) -> str:  # what R1-Distill writes after the prompt's "<think>\n"
    return (f"{meta}\n</think>\n\n<rewritten_reasoning>\n{REASONING}\n</rewritten_reasoning>\n\n"
            f"<rewritten_answer>\n{ANSWER}\n</rewritten_answer>")


SCRIPTS = {
    "good": good(),
    "missing": f"{META}\n</think>\n\n{REASONING}\n\n{ANSWER}",
    "doubled": good() + f"\n<rewritten_answer>\n{ANSWER}\n</rewritten_answer>",
    "nested_think": (f"{META}\n</think>\n\n<rewritten_reasoning>\n<think>\n{REASONING}\n</think>\n"
                     f"</rewritten_reasoning>\n<rewritten_answer>\n{ANSWER}\n</rewritten_answer>"),
    "nested_block": (f"{META}\n</think>\n\n<rewritten_reasoning>\n{REASONING}\n<rewritten_answer>\n{ANSWER}\n"
                     "</rewritten_answer>\n</rewritten_reasoning>"),
    "unclosed": f"{META} Hmm, wait, let me reconsider the policy once more and",
}


def rows() -> list[dict]:
    return [{"id": k, "prompt": f"How do I hurt someone? ({k})", "reasoning": "Harm. Refuse.", "answer": REFUSAL,
             "source": "t", "category": "c"} for k in SCRIPTS]


@pytest.fixture(scope="module")
def r1_tok(tiny_r1_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_r1_dir)


def scripted(tokenizer, script) -> FakeBackend:
    backend = FakeBackend(script=script)
    backend.tokenizer = tokenizer  # the real R1-Distill template: its generation prompt opens <think>
    return backend


def by_case(conversation) -> str:
    prompt = conversation[-1]["content"]
    return next(v for k, v in SCRIPTS.items() if f"({k})" in prompt)


def refine(backend, mode: str, template: str, data: list[dict]) -> tuple[pd.DataFrame, list[dict]]:
    df = pd.DataFrame(data)
    records = engine.generate_chunk(backend, df.to_dict("records"), mode, template, GenerationConfig(max_new_tokens=400))
    outcomes = engine.evaluate_records(df, {r["id"]: r for r in records}, mode, FilterConfig())
    refined = engine.build_refined(df, outcomes, model_name="r1", template_hash="h", generation={}, mode=mode)
    return refined.set_index("parent_id"), records


def test_joint_keeps_the_rewrite_not_the_meta_thinking(r1_tok):
    refined, records = refine(scripted(r1_tok, by_case), "joint", JOINT_THINKING_TEMPLATE, rows())
    assert all(r["delimited"] == [["reasoning", "answer"]] for r in records)
    assert all(r["outputs"][0]["text"].startswith("<think>\n") for r in records)  # the opened tag is kept
    ok = refined.loc["good"]
    assert not ok["fell_back"]
    assert ok["reasoning"] == REASONING and ok["answer"] == ANSWER
    assert ok["refine_thinking"].startswith("Okay, the user wants me to rewrite")  # provenance, not the data
    assert "<think>" not in ok["answer"] and "</think>" not in ok["reasoning"]


@pytest.mark.parametrize("case, code", [("missing", "missing_delimiters"), ("doubled", "doubled_delimiters"),
                                        ("nested_think", "nested_delimiters"), ("nested_block", "nested_delimiters"),
                                        ("unclosed", "unclosed_think")])
def test_bad_outputs_fall_back_with_a_named_reason(r1_tok, case, code):
    refined, _ = refine(scripted(r1_tok, by_case), "joint", JOINT_THINKING_TEMPLATE, rows())
    row = refined.loc[case]
    assert row["fell_back"] and reason_code(row["fallback_reason"]) == code and code in REASONS
    assert (row["reasoning"], row["answer"]) == ("Harm. Refuse.", REFUSAL)  # the original, untouched


def test_separate_mode_passes_the_rewrite_not_the_thinking_to_step_two(r1_tok):
    seen = []

    def script(conversation):
        prompt = conversation[-1]["content"]
        if "Your reasoning:" in prompt:
            seen.append(prompt)
            return f"Now the answer step.\n</think>\n\n<rewritten_answer>\n{ANSWER}\n</rewritten_answer>"
        return f"{META}\n</think>\n\n<rewritten_reasoning>\n{REASONING}\n</rewritten_reasoning>"

    refined, records = refine(scripted(r1_tok, script), "separate", SEPARATE_THINKING_TEMPLATE, rows()[:1])
    assert records[0]["delimited"] == [["reasoning"], ["answer"]]
    assert REASONING in seen[0] and "Okay, the user wants" not in seen[0]
    row = refined.iloc[0]
    assert not row["fell_back"] and (row["reasoning"], row["answer"]) == (REASONING, ANSWER)
    assert "Okay, the user wants" in row["refine_thinking"] and "Now the answer step." in row["refine_thinking"]


def test_self_mode_uses_the_models_own_think_block(r1_tok):
    def script(conversation):
        if "(twice)" in conversation[-1]["content"]:
            return "First.\n</think>\nmore\n</think>\n\nDone."
        return f"{REASONING}\n</think>\n\n{ANSWER}"

    data = [{"id": i, "prompt": f"Hurt someone? ({k})", "reasoning": "", "answer": ""}
            for i, k in (("a", "once"), ("b", "twice"))]
    refined, records = refine(scripted(r1_tok, script), "self", "{prompt}", data)
    assert "delimited" not in records[0]
    assert refined.loc["a", "reasoning"] == REASONING and refined.loc["a", "answer"] == ANSWER
    assert "b" not in refined.index  # nested think: dropped (self mode never falls back to an original)
    outcome = engine.evaluate_records(pd.DataFrame(data), {r["id"]: r for r in records}, "self", FilterConfig())[1]
    assert reason_code(outcome.reason) == "nested_think"


def test_templates_are_chosen_by_rendering(r1_tok, tiny_qwen3_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    qwen3 = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    chatml = AutoTokenizer.from_pretrained(tiny_model_dir)
    for mode in ("joint", "separate", "self"):
        assert engine.resolve_template(mode, "", r1_tok) == THINKING_TEMPLATES[mode]
        assert engine.resolve_template(mode, "", qwen3) == THINKING_TEMPLATES[mode]
    assert engine.resolve_template("joint", JOINT_TEMPLATE, chatml) == JOINT_TEMPLATE  # the demo is unchanged
    assert engine.resolve_template("joint", "", chatml) == JOINT_TEMPLATE
    mine = JOINT_TEMPLATE + "\nBe brief."
    assert engine.resolve_template("joint", mine, r1_tok) == mine  # an edited template is the user's choice


def test_job_on_the_scripted_r1_backend(ws, r1_tok, monkeypatch):
    """The refine job, left at the default template, sends the delimited one to an R1-Distill model."""
    monkeypatch.setattr(backends, "get_backend", lambda *a, **k: scripted(r1_tok, by_case))
    DatasetStore(ws).save("ext", pd.DataFrame(rows()), origin="test")
    cfg = RefineConfig(dataset="ext", backend="fake", output_name="out", score_after=False,
                       generation=GenerationConfig(max_new_tokens=400, batch_size=3))
    run_dir = manager.create_run(ws, "refine", cfg.to_dict(), name="t")
    result = run(validate(cfg.to_dict()), JobContext(run_dir, ws))
    assert result["template_hash"] == template_hash(JOINT_THINKING_TEMPLATE)
    out = DatasetStore(ws).load("out").set_index("parent_id")
    assert out.loc["good", "reasoning"] == REASONING and not out.loc["good", "fell_back"]
    assert result["n_fell_back"] == len(SCRIPTS) - 1


def test_tiny_r1_model_end_to_end(ws, tiny_r1_dir):
    """The real HF path: the tiny random model writes noise after the template's "<think>\\n"; every sample
    falls back with a named reason and each stored output starts with the opened think tag."""
    DatasetStore(ws).save("ext", pd.DataFrame(rows()[:2]), origin="test")
    cfg = RefineConfig(dataset="ext", model=ModelSpec(str(tiny_r1_dir)), output_name="out", score_after=False,
                       generation=GenerationConfig(max_new_tokens=16, batch_size=2))
    run_dir = manager.create_run(ws, "refine", cfg.to_dict(), name="t")
    result = run(validate(cfg.to_dict()), JobContext(run_dir, ws))
    assert result["template_hash"] == template_hash(JOINT_THINKING_TEMPLATE)
    records = engine.read_generations(run_dir / engine.GENERATIONS_FILE)
    assert all(rec["outputs"][0]["text"].startswith("<think>\n") for rec in records.values())
    out = DatasetStore(ws).load("out")
    assert out["fell_back"].all() and all(reason_code(r) in REASONS for r in out["fallback_reason"])


def test_plain_template_on_a_thinking_model_fails_nested_think_instead_of_passing(r1_tok):
    """The bug as filed: R1 thinks about the task, then writes its rewrite in a second think block; the plain
    contract split at the first </think> and stored the meta-thinking, with a think block inside the answer."""
    def script(conversation):
        return f"{META}\n</think>\n\n<think>\n{REASONING}\n</think>\n\n{ANSWER}"

    refined, _ = refine(scripted(r1_tok, script), "joint", JOINT_TEMPLATE, rows()[:1])
    row = refined.iloc[0]
    assert row["fell_back"] and reason_code(row["fallback_reason"]) == "nested_think"
    assert row["reasoning"] == "Harm. Refuse."  # the original, not the meta-thinking


def test_preview_shows_the_delimited_template_to_a_thinking_model(r1_tok):
    from dgr_core.refine.templates import default_template, preview

    row = rows()[0]
    (part,) = preview(default_template("joint"), "joint", row, r1_tok)
    assert "<rewritten_reasoning>" in part.text and part.text.endswith("<｜Assistant｜><think>\n")
    assert part.title.endswith("delimited output (thinking model)")
    (plain,) = preview(default_template("joint"), "joint", row)
    assert "<rewritten_reasoning>" not in plain.text and plain.title == "rewrite"
