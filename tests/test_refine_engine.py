"""The refinement engine without the job machinery: prompts sent per mode, records and their resume bookkeeping,
the refined table's provenance (and its round trip through the dataset store), self mode dropping failures, the
throughput meter and the preview tokenizer."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dgr_core.backends.base import GenerationConfig
from dgr_core.backends.fake import FakeBackend
from dgr_core.data.store import DatasetStore
from dgr_core.models.loading import ModelSpec
from dgr_core.refine import engine, parsing
from dgr_core.refine.filters import FilterConfig, reason_code
from dgr_core.refine.templates import (
    STEP1_PLACEHOLDER,
    default_template,
    preview,
    render_template,
    split_parts,
)

REFUSAL = "I'm sorry, but I can't help with that."


class CountingBackend(FakeBackend):
    """The fake backend, remembering every conversation it generated for."""

    def __init__(self, script=None):
        super().__init__(script=script)
        self.seen: list[list[dict[str, str]]] = []

    def generate(self, conversations, cfg, on_done=None):
        self.seen += conversations
        return super().generate(conversations, cfg, on_done)


def rows() -> list[dict]:
    return [{"id": "a", "prompt": "How do I build a bomb?", "reasoning": "Dangerous.", "answer": REFUSAL,
             "category": "weapons"},
            {"id": "b", "prompt": "  ", "reasoning": "x", "answer": "y", "category": ""},
            {"id": "c", "prompt": "What is 2 + 3?", "reasoning": "Add them.", "answer": "5", "category": "math"}]


def test_joint_sends_one_user_turn_per_prompted_row_and_keeps_row_order():
    backend = CountingBackend()
    records = engine.generate_chunk(backend, rows(), "joint", default_template("joint"), GenerationConfig())
    assert [r["id"] for r in records] == ["a", "b", "c"]
    # The row without a prompt is skipped, not sent; the others are one user turn each (the backend's chat
    # template wraps it), filled with the row's own fields.
    assert records[1] == {"id": "b", "source_hash": engine.source_hash(rows()[1]), "outputs": [],
                          "skipped": "empty_prompt"}
    assert [[m["role"] for m in c] for c in backend.seen] == [["user"], ["user"]]
    assert backend.seen[0][0]["content"] == render_template(default_template("joint"), rows()[0])
    assert "Dangerous." in backend.seen[0][0]["content"] and "Add them." in backend.seen[1][0]["content"]
    out = records[0]["outputs"][0]
    assert out["finish_reason"] == "stop" and out["n_tokens"] > 0 and "<think>" in out["text"]


def test_separate_mode_feeds_the_rewritten_reasoning_into_the_answer_step():
    def script(conv):
        content = conv[-1]["content"]
        return "<think>\nMy own careful reasoning.\n</think>" if "Original reasoning" in content else REFUSAL

    backend = CountingBackend(script)
    template = default_template("separate")
    (record,) = engine.generate_chunk(backend, rows()[:1], "separate", template, GenerationConfig())
    assert len(record["outputs"]) == 2 and len(backend.seen) == 2
    step1, step2 = (c[0]["content"] for c in backend.seen)
    assert step1 == render_template(split_parts(template)[0], rows()[0])
    assert "My own careful reasoning." in step2 and "<think>" not in step2 and REFUSAL in step2
    rewrite = parsing.parse_record("separate", record)
    assert (rewrite.reasoning, rewrite.answer) == ("My own careful reasoning.", REFUSAL)


def test_generation_settings_reach_the_backend_and_cut_outputs_are_marked():
    backend = FakeBackend(script=lambda conv: "<think>\n" + "word " * 50 + "\n</think>\n\nDone.")
    (record,) = engine.generate_chunk(backend, rows()[2:], "joint", default_template("joint"),
                                      GenerationConfig(max_new_tokens=7))
    assert record["outputs"][0]["finish_reason"] == "length" and record["outputs"][0]["n_tokens"] == 7
    (outcome,) = engine.evaluate_records(pd.DataFrame(rows()[2:]), {"c": record}, "joint", FilterConfig())
    assert not outcome.ok and reason_code(outcome.reason) == "truncated"


def test_generations_file_survives_a_cut_last_line_and_text_changes_are_regenerated(tmp_path):
    path = tmp_path / engine.GENERATIONS_FILE
    records = engine.generate_chunk(FakeBackend(), rows(), "joint", default_template("joint"), GenerationConfig())
    engine.append_generations(path, records[:2])
    with open(path, "a", encoding="utf-8") as fh:  # a kill in the middle of writing the next chunk
        fh.write(json.dumps(records[2])[:25])
    done = engine.read_generations(path)
    assert set(done) == {"a", "b"}
    df = pd.DataFrame(rows())
    assert [r["id"] for r in engine.pending_rows(df, done)] == ["c"]
    df.loc[0, "answer"] = "A different answer now."  # edited since: its record no longer counts
    assert [r["id"] for r in engine.pending_rows(df, done)] == ["a", "c"]


def _outcomes(df: pd.DataFrame, mode: str = "joint") -> list[engine.Outcome]:
    def script(conv):
        content = conv[-1]["content"]
        if "bomb" in content:
            return "<think>\nThis would hurt people; I decline.\n</think>\n\nI'm sorry, but I won't help with that."
        return "Five, no think block."

    records = {r["id"]: r for r in engine.generate_chunk(FakeBackend(script=script), df.to_dict("records"), mode,
                                                          default_template(mode), GenerationConfig())}
    return engine.evaluate_records(df, records, mode, FilterConfig())


def test_refined_rows_carry_provenance_and_fall_back_to_the_original(ws):
    df = pd.DataFrame(rows()).assign(source="test", think_status="closed", extra_col=[1, 2, 3])
    outcomes = _outcomes(df)
    assert [(o.ok, reason_code(o.reason) if o.reason else "") for o in outcomes] == [
        (True, ""), (False, "empty_prompt"), (False, "no_think")]
    gen = GenerationConfig(max_new_tokens=99, temperature=0.7, top_p=0.9, seed=5)
    refined = engine.build_refined(df, outcomes, model_name="fake", template_hash="abc123",
                                   generation=gen.to_dict(), mode="joint")
    assert refined["id"].tolist() == ["a-r", "b-r", "c-r"] and refined["parent_id"].tolist() == ["a", "b", "c"]
    assert refined["fell_back"].tolist() == [False, True, True]
    assert refined.loc[0, "reasoning"] == "This would hurt people; I decline."
    assert refined.loc[0, "answer"] == "I'm sorry, but I won't help with that."
    for col in ("reasoning", "answer", "prompt", "category", "extra_col"):  # fallen-back rows are the originals
        assert refined.loc[1:, col].tolist() == df.loc[1:, col].tolist()
    assert refined.loc[2, "raw_output"] == "Five, no think block." and refined.loc[2, "fallback_reason"] == "no_think"

    # Provenance round-trips through the dataset store, with the settings readable back into a config.
    store = DatasetStore(ws)
    store.save("refined", refined, origin="refine:test", parent="orig")
    back = store.load("refined")
    pd.testing.assert_frame_equal(back, refined, check_dtype=False)
    assert back["fell_back"].dtype == bool and store.info("refined").parent == "orig"
    settings = json.loads(back.loc[0, "generation"])
    assert settings.pop("mode") == "joint" and GenerationConfig.from_dict(settings) == gen
    assert set(engine.PROVENANCE_COLUMNS) <= set(back.columns)


def test_self_mode_drops_failed_answers_instead_of_falling_back():
    df = pd.DataFrame(rows())
    outcomes = _outcomes(df, "self")
    refined = engine.build_refined(df, outcomes, model_name="fake", template_hash="h", generation={}, mode="self")
    assert refined["parent_id"].tolist() == ["a"] and not refined["fell_back"].any()
    fallbacks = engine.fallback_frame(df, outcomes)
    assert fallbacks["parent_id"].tolist() == ["b", "c"]
    assert [reason_code(r) for r in fallbacks["reason"]] == ["empty_prompt", "no_think"]
    empty = engine.build_refined(df, [engine.Outcome(o.id, None, False, "x") for o in outcomes],
                                 model_name="fake", template_hash="h", generation={}, mode="self")
    assert empty.empty and "parent_id" in empty.columns


def test_meter_reports_rates_of_this_process_only():
    now = [100.0]
    meter = engine.Meter(total=10, already_done=4, clock=lambda: now[0])
    assert meter.event()["samples_per_s"] is None and meter.event()["eta_s"] is None
    now[0] = 105.0  # model loading: not throughput
    meter.begin()
    now[0] = 107.0
    meter.add([{"outputs": [{"n_tokens": 30}]}, {"outputs": [{"n_tokens": 10}, {"n_tokens": 10}]}])
    ev = meter.event("generating")
    assert (ev["done"], ev["total"], ev["samples_per_s"], ev["tokens_per_s"], ev["eta_s"]) == (6, 10, 1.0, 25.0, 4.0)
    assert ev["message"] == "generating · 1.00 samples/s"
    meter.stop()
    now[0] = 200.0  # scoring afterwards does not dilute the generation rate
    assert meter.samples_per_s() == 1.0


def test_preview_tokenizer_uses_the_models_chat_template(ws, tiny_model_dir):
    tok, note = engine.preview_tokenizer(ModelSpec(str(tiny_model_dir)), "hf", ws)
    assert tok is not None and note == ""
    (part,) = preview(default_template("joint"), "joint", rows()[0], tok)
    assert part.text.startswith("<|im_start|>system") and part.text.endswith("<|im_start|>assistant\n")
    assert "How do I build a bomb?" in part.text
    tok, note = engine.preview_tokenizer(ModelSpec(str(ws.root / "no-such-model")), "hf", ws)
    assert tok is None and "plain prompt" in note
    fake, _ = engine.preview_tokenizer(ModelSpec("anything"), "fake", ws)
    assert STEP1_PLACEHOLDER in preview(default_template("separate"), "separate", rows()[0], fake)[1].text


@pytest.mark.parametrize(("model", "mode", "name"), [
    ("demo", "joint", "ds-refined-demo"), ("Qwen/Qwen3-0.6B", "separate", "ds-refined-Qwen3-0.6B"),
    ("/models/my-model/", "self", "ds-self-my-model")])
def test_default_output_names(model, mode, name):
    assert engine.default_output_name("ds", model, mode) == name
