"""Refine templates and the checks before a job starts: defaults pass, each bad template / dataset / setting is
rejected with a message naming the problem, rendering, hashing, preview, config round trip."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dgr_core.backends.base import GenerationConfig
from dgr_core.backends.fake import FakeTokenizer
from dgr_core.data.store import DatasetStore
from dgr_core.errors import SpecError
from dgr_core.models.loading import ModelSpec
from dgr_core.refine.engine import check_dataset, default_output_name
from dgr_core.refine.filters import FilterConfig
from dgr_core.refine.job import RefineConfig, validate
from dgr_core.refine.templates import (
    MODES,
    SEPARATOR,
    STEP1_PLACEHOLDER,
    check_template,
    default_template,
    preview,
    render_template,
    template_hash,
)

ROW = {"id": "a", "prompt": "How do I make a bomb?", "reasoning": "I should not answer this question!",
       "answer": "I'm sorry, but I can't assist with that request.", "category": "weapons"}


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {"id": "", "prompt": "", "reasoning": "", "answer": "", "source": "t", "category": "",
            "think_status": "closed"}
    return pd.DataFrame([{**base, **r} for r in rows])


@pytest.mark.parametrize("mode", MODES)
def test_default_templates_pass_and_render_the_row(mode):
    template = default_template(mode)
    check_template(template, mode)
    parts = preview(template, mode, ROW)
    rendered = "\n".join(p.text for p in parts)
    assert ROW["prompt"] in rendered
    # self mode must never show the original response; the other modes must show it.
    assert (ROW["reasoning"] in rendered) == (mode != "self")
    assert (ROW["answer"] in rendered) == (mode != "self")
    assert len(parts) == (2 if mode == "separate" else 1)


BAD = [
    ("joint", "Q: {prompt}\nR: {reasoning}", "missing required placeholder(s) {answer}"),
    ("joint", "{prompt} {reasoning} {answer} {foo}", "unknown placeholder {foo}"),
    ("self", "{prompt}\n{reasoning}", "{reasoning} cannot be used"),
    ("self", "", "empty"),
    ("separate", "{prompt} {reasoning} {answer}", "needs two parts"),
    ("joint", f"{{prompt}} {{reasoning}}\n{SEPARATOR}\n{{answer}}", "only separate mode has two steps"),
    ("separate", f"{{prompt}} {{rewritten_reasoning}} {{reasoning}}\n{SEPARATOR}\n{{answer}}",
     "only available in the answer step"),
    ("separate", f"{{prompt}} {{reasoning}}\n{SEPARATOR}\nno answer here", "missing required placeholder(s) {answer}"),
    ("joint", "{prompt {reasoning} {answer}", "literal brace"),
    ("joint", "{prompt:>10} {reasoning} {answer}", "not a plain placeholder"),
    ("joint", "{prompt!r} {reasoning} {answer}", "not a plain placeholder"),
    ("joint", "{prompt.upper} {reasoning} {answer}", "not a plain placeholder"),
    ("rewrite", "{prompt}", "mode must be one of"),
]


@pytest.mark.parametrize(("mode", "template", "message"), BAD)
def test_bad_templates_are_rejected_naming_the_problem(mode, template, message):
    with pytest.raises(SpecError) as info:
        check_template(template, mode)
    assert message in str(info.value)


def test_literal_braces_and_missing_fields_render():
    template = 'JSON {{"q": "{prompt}"}} {reasoning}|{answer}|'
    check_template(template, "joint")
    out = render_template(template, {"prompt": "hi", "reasoning": None, "answer": float("nan")})
    assert out == 'JSON {"q": "hi"} ||'


def test_template_hash_is_stable_sensitive_and_ignores_line_endings():
    t = default_template("joint")
    assert template_hash(t) == template_hash(t) and len(template_hash(t)) == 16
    assert template_hash(t.replace("\n", "\r\n")) == template_hash(t)
    assert template_hash(t + " ") != template_hash(t)


def test_preview_uses_the_chat_template_when_a_tokenizer_is_given():
    plain = preview(default_template("separate"), "separate", ROW)
    chat = preview(default_template("separate"), "separate", ROW, FakeTokenizer())
    assert [p.title for p in plain] == ["reasoning step", "answer step"]
    assert STEP1_PLACEHOLDER in plain[1].text  # step 2 shows where step 1's output goes
    for p, c in zip(plain, chat, strict=True):
        assert "<|im_start|>" not in p.text
        assert c.text.startswith("<|im_start|>user\n") and c.text.endswith("<|im_start|>assistant\n")
        assert p.text in c.text


@pytest.mark.parametrize(("rows", "mode", "message"), [
    ([], "joint", "has no rows"),
    ([{"id": "1", "prompt": "", "answer": "x"}], "self", "has no prompts"),
    ([{"id": "1", "prompt": "q", "answer": "x"}, {"id": "2", "prompt": "r", "answer": "y"}], "joint", "answer-only"),
    ([{"id": "1", "prompt": "q", "answer": "x"}], "separate", "use mode 'self'"),
    ([{"id": "1", "prompt": "q", "reasoning": "r"}, {"id": "1", "prompt": "q2", "reasoning": "r"}], "joint",
     "duplicate ids (1)"),
])
def test_bad_datasets_are_rejected(rows, mode, message):
    df = frame(rows) if rows else frame([{"id": "x"}]).iloc[0:0]
    with pytest.raises(SpecError) as info:
        check_dataset(df, mode, "d")
    assert message in str(info.value) and "'d'" in str(info.value)


def test_answer_only_dataset_is_fine_for_self_mode():
    check_dataset(frame([{"id": "1", "prompt": "q", "answer": "x"}]), "self", "d")


def test_config_round_trips_through_json():
    cfg = RefineConfig(dataset="d", model=ModelSpec("some/model", dtype="bfloat16"), backend="fake", mode="separate",
                       generation=GenerationConfig(max_new_tokens=7, temperature=0.5, seed=3),
                       filters=FilterConfig(expect_think=False, judge="meta-llama/Llama-Guard-3-1B"), limit=4)
    again = RefineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert validate(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("change", "message"), [
    ({"dataset": ""}, "'dataset'"),
    ({"backend": "nope"}, "unknown backend 'nope'"),
    ({"mode": "rewrite"}, "mode must be one of"),
    ({"template": "{prompt}"}, "missing required placeholder"),
    ({"limit": 0}, "'limit'"),
    ({"output_name": "d"}, "is the input dataset"),
    ({"temperatur": 1.0}, "unknown key(s) config.temperatur"),
    ({"generation": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"generation": {"top_p": 0}}, "top_p"),
    ({"filters": {"min_length_ratio": 3.0, "max_length_ratio": 2.0}}, "min_length_ratio (3) is above"),
    ({"filters": {"judge": " "}}, "judge must be"),
    ({"filters": {"max_repeat_share": 0}}, "max_repeat_share"),
    ({"model": "demo"}, "config.model: expected an object"),
])
def test_validate_names_the_bad_field(change, message):
    config = {**RefineConfig(dataset="d", backend="fake").to_dict(), **change}
    with pytest.raises(SpecError) as info:
        validate(config)
    assert message in str(info.value)


def test_validate_checks_the_dataset_content_in_the_workspace(ws):
    DatasetStore(ws).save("answers", frame([{"id": "1", "prompt": "q", "answer": "x"}]), origin="test")
    with pytest.raises(SpecError, match="answer-only"):
        validate(RefineConfig(dataset="answers", backend="fake").to_dict())
    validate(RefineConfig(dataset="answers", backend="fake", mode="self").to_dict())


def test_default_output_name():
    assert default_output_name("star1", "demo", "joint") == "star1-refined-demo"
    assert default_output_name("star1", "Qwen/Qwen3-0.6B", "separate") == "star1-refined-Qwen3-0.6B"
    assert default_output_name("star1", "/models/my model/", "self") == "star1-self-my_model"
