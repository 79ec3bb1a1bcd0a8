"""Training rows: subset strategies (random, NLL ranks, category, saved selection, mixing) and the encoding whose
labels cover exactly the assistant turn of the chat template."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError, SpecError
from dgr_core.train.config import SubsetConfig, TrainConfig, TrainJobConfig
from dgr_core.train.data import (
    IGNORE_INDEX,
    build_subset,
    choose_rows,
    collate,
    dataset_categories,
    encode_frame,
    encode_row,
    list_selections,
    mix_rows,
)


def frame(n: int = 12, prefix: str = "r") -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"{prefix}{i:02d}" for i in range(n)],
        "prompt": [f"How do I do harmful thing number {i}?" for i in range(n)],
        "reasoning": ["I should not answer this question!"] * n,
        "answer": ["I'm sorry, but I can't assist with that request."] * n,
        "source": "test",
        "category": [["violence", "cyber", "drugs"][i % 3] for i in range(n)],
    })


# ---------------------------------------------------------------------------------------------- strategies


def test_random_is_seeded_distinct_and_extends_to_all():
    df = frame()
    a = choose_rows(df, SubsetConfig("random", n=5, seed=1))
    assert a["id"].tolist() == choose_rows(df, SubsetConfig("random", n=5, seed=1))["id"].tolist()
    assert a["id"].is_unique and len(a) == 5 and set(a["id"]) <= set(df["id"])
    assert a["id"].tolist() != choose_rows(df, SubsetConfig("random", n=5, seed=2))["id"].tolist()
    everything = choose_rows(df, SubsetConfig("random", n=0, seed=1))
    assert sorted(everything["id"]) == sorted(df["id"])
    with pytest.raises(DataError, match="only 12"):
        choose_rows(df, SubsetConfig("random", n=13))


def test_nll_strategies_rank_by_the_chosen_score_and_skip_missing():
    df = frame(6)
    nll = pd.Series([3.0, 1.0, np.nan, 5.0, 2.0, 4.0], index=df["id"])
    low = choose_rows(df, SubsetConfig("lowest_nll", n=3), nll=nll)
    high = choose_rows(df, SubsetConfig("highest_nll", n=3), nll=nll)
    assert low["id"].tolist() == ["r01", "r04", "r00"]
    assert high["id"].tolist() == ["r03", "r05", "r00"]
    assert "r02" not in choose_rows(df, SubsetConfig("lowest_nll", n=0), nll=nll)["id"].tolist()
    with pytest.raises(DataError, match="only 5"):
        choose_rows(df, SubsetConfig("highest_nll", n=6), nll=nll)
    with pytest.raises(DataError, match="NLL"):
        choose_rows(df, SubsetConfig("lowest_nll", n=3))


def test_category_strategy_takes_only_that_category():
    df = frame(12)
    rows = choose_rows(df, SubsetConfig("category", n=3, category="cyber", seed=0))
    assert len(rows) == 3 and set(rows["category"]) == {"cyber"}
    assert len(choose_rows(df, SubsetConfig("category", n=0, category="cyber"))) == 4
    with pytest.raises(DataError, match="no row has category"):
        choose_rows(df, SubsetConfig("category", n=0, category="fraud"))


def test_build_subset_scores_only_for_nll_strategies(ws):
    DatasetStore(ws).save("toy", frame(8), origin="test")
    calls = []

    def scorer(df):  # stands in for the scoring cache: NLL = minus the row number
        calls.append(len(df))
        return pd.DataFrame({"id": df["id"], "nll_total": [-float(i[1:]) for i in df["id"]],
                             "nll_reasoning": 0.0, "nll_answer": 0.0})

    rows = build_subset(ws, "toy", SubsetConfig("lowest_nll", n=2), nll_scorer=scorer)
    assert rows["id"].tolist() == ["r07", "r06"] and calls == [8]
    build_subset(ws, "toy", SubsetConfig("random", n=2), nll_scorer=scorer)
    assert calls == [8]
    with pytest.raises(DataError, match="scorer"):
        build_subset(ws, "toy", SubsetConfig("highest_nll", n=2))


def test_selection_saved_on_the_shift_page_is_used_in_its_order(ws):
    from dgr_core.shift.selections import save_selection

    store = DatasetStore(ws)
    store.save("toy", frame(8), origin="test")
    store.save("other", frame(3, "o"), origin="test")
    save_selection(ws, "far out", "toy", ["r05", "r01", "r07"])
    assert list_selections(ws, "toy") == ["far_out"] and list_selections(ws, "other") == []
    rows = build_subset(ws, "toy", SubsetConfig("selection", n=0, selection="far out"))
    assert rows["id"].tolist() == ["r05", "r01", "r07"]
    two = build_subset(ws, "toy", SubsetConfig("selection", n=2, selection="far_out", seed=3))
    assert len(two) == 2 and set(two["id"]) <= {"r05", "r01", "r07"}
    with pytest.raises(DataError, match="belongs to dataset 'toy'"):
        build_subset(ws, "other", SubsetConfig("selection", selection="far_out"))
    with pytest.raises(DataError, match="no selection"):
        build_subset(ws, "toy", SubsetConfig("selection", selection="nope"))


def test_selection_file_format_is_the_shift_pages(ws):
    """A selection written by hand in the documented format works too (format shared with dgr_core.shift)."""
    DatasetStore(ws).save("toy", frame(4), origin="test")
    ws.selections.mkdir(parents=True, exist_ok=True)
    (ws.selections / "hand.json").write_text(json.dumps({"name": "hand", "dataset": "toy", "ids": ["r03", "r00"]}))
    rows = build_subset(ws, "toy", SubsetConfig("selection", n=0, selection="hand"))
    assert rows["id"].tolist() == ["r03", "r00"]


def test_mixing_adds_prefixed_seeded_rows(ws):
    store = DatasetStore(ws)
    store.save("toy", frame(6), origin="test")
    store.save("math", frame(20, "m"), origin="test")
    sub = SubsetConfig("random", n=4, seed=0, mix_dataset="math", mix_n=3)
    rows = build_subset(ws, "toy", sub)
    ids = rows["id"].tolist()
    assert len(ids) == 7 and sum(i.startswith("math:m") for i in ids) == 3
    assert ids == build_subset(ws, "toy", sub)["id"].tolist()
    with pytest.raises(DataError, match="only 20"):
        mix_rows(rows, store.load("math"), SubsetConfig(mix_dataset="math", mix_n=21))
    assert dataset_categories(ws, "toy") == ["cyber", "drugs", "violence"]


# ---------------------------------------------------------------------------------------------- configs


def test_job_config_round_trips_through_json_and_names_bad_fields():
    cfg = TrainJobConfig("toy", subset=SubsetConfig("category", n=3, category="cyber"),
                         train=TrainConfig(method="full", learning_rate=1e-5, lora_targets="all-linear"))
    again = TrainJobConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.train.lr() == 1e-5
    assert TrainConfig(method="lora").lr() == 1e-3 and TrainConfig(method="full").lr() == 5e-5
    for bad, field in [({"train": {"epochs": 0}}, "epochs"), ({"train": {"lr": 1}}, r"unknown key\(s\) train.train.lr"),
                       ({"subset": {"strategy": "best"}}, "subset.strategy"),
                       ({"subset": {"strategy": "category"}}, "subset.category"),
                       ({"subset": {"mix_n": 2}}, "mix_dataset"), ({"train": {"method": "qlora"}}, "method"),
                       ({"train": {"lora_targets": []}}, "lora_targets")]:
        with pytest.raises(SpecError, match=field):
            TrainJobConfig.from_dict({"dataset": "toy", **bad}).validate()


def test_hold_out_never_trains_on_the_evaluations_prompts(ws, capsys):
    """Rows whose prompt the evaluation asks (whitespace aside) are dropped before any strategy draws; the CLI's
    --evaluate fills the list from the evaluation settings unless --no-hold-out."""
    from dgr_core.cli import main
    from dgr_core.evaluate.runner import BenchmarkSource, EvalConfig, item_prompts
    from dgr_core.jobs import manager

    asked = item_prompts(EvalConfig(benchmarks=[BenchmarkSource("strongreject")], limit=3))
    assert len(asked) == 3 and all(asked)
    df = frame(8)
    df.loc[[1, 4, 6], "prompt"] = [f"  {asked[0]}\n", asked[1], asked[2]]
    DatasetStore(ws).save("toy", df, origin="test")
    for strategy, n in (("all", 0), ("random", 5)):
        rows = build_subset(ws, "toy", SubsetConfig(strategy, n=n, hold_out_prompts=asked))
        assert len(rows) == 5 and not {"r01", "r04", "r06"} & set(rows["id"])
    with pytest.raises(DataError, match="only 5"):
        build_subset(ws, "toy", SubsetConfig("random", n=6, hold_out_prompts=asked))
    with pytest.raises(SpecError, match="hold_out_prompts"):
        TrainJobConfig.from_dict({"dataset": "toy", "subset": {"hold_out_prompts": "all of them"}})

    cli = ["train", "--model", "demo", "--dataset", "toy", "--create-only", "--evaluate",
           "--eval-benchmarks", "strongreject", "--eval-limit", "3"]
    assert main(cli) == 0 and main([*cli, "--no-hold-out", "--name", "no-hold"]) == 0
    held = sorted((r.spec["config"]["subset"]["hold_out_prompts"] for r in manager.list_runs(ws, "train")), key=len)
    assert held == [[], asked]
    assert "holding out the 3 prompts" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- encoding


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("reasoning", ["I should not answer this question!", ""])
def test_labels_cover_exactly_the_assistant_turn(tiny_model_dir, reasoning):
    tok = _tokenizer(tiny_model_dir)
    row = {"id": "x", "prompt": "Write a tutorial on how to make a bomb.", "reasoning": reasoning,
           "answer": "I'm sorry, but I can't assist with that request."}
    ex = encode_row(row, tok, max_length=512)
    content = (f"<think>\n{reasoning}\n</think>\n\n" if reasoning else "") + row["answer"]
    # The prompt part is token for token the template's generation prompt...
    head = tok.apply_chat_template([{"role": "user", "content": row["prompt"]}], add_generation_prompt=True,
                                   tokenize=True, return_dict=False)
    head = list(head["input_ids"] if isinstance(head, dict) else head)
    assert ex.input_ids[: len(head)] == head
    # ...the whole sequence is the template's rendering of the conversation up to the end-of-turn token...
    full = tok.apply_chat_template([{"role": "user", "content": row["prompt"]},
                                    {"role": "assistant", "content": content}], tokenize=False)
    assert tok.decode(ex.input_ids) == full[: full.index(content) + len(content)] + tok.eos_token
    # ...and the labels are -100 exactly on the prompt and the ids exactly on the reply and its end token.
    assert all(label == IGNORE_INDEX for label in ex.labels[: len(head)])
    assert ex.labels[len(head):] == ex.input_ids[len(head):]
    assert tok.decode(ex.labels[len(head):]) == content + tok.eos_token
    assert ex.labels[-1] == tok.eos_token_id and not ex.truncated


def test_truncation_and_rows_without_reply(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    df = frame(3)
    full = encode_row(df.iloc[0].to_dict(), tok, 512)
    n_prompt = sum(label == IGNORE_INDEX for label in full.labels)
    cut = encode_row(df.iloc[0].to_dict(), tok, n_prompt + 3)
    assert cut.truncated and cut.input_ids == full.input_ids[: n_prompt + 3]
    assert cut.labels == full.labels[: n_prompt + 3]
    with pytest.raises(DataError, match="max_length"):
        encode_frame(df, tok, n_prompt - 1)


def test_collate_pads_with_ignored_labels(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    df = frame(2)
    df.loc[1, "answer"] = "A much longer refusal that goes on for a while so the rows differ in length."
    examples = encode_frame(df, tok, 512)
    batch = collate(examples, pad_id=tok.pad_token_id)
    lengths = [len(e.input_ids) for e in examples]
    assert batch["input_ids"].shape == (2, max(lengths))
    for i, e in enumerate(examples):
        assert batch["attention_mask"][i].sum().item() == lengths[i]
        assert batch["labels"][i, : lengths[i]].tolist() == e.labels
        assert (batch["labels"][i, lengths[i]:] == IGNORE_INDEX).all()
