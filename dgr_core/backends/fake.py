"""A scripted, deterministic backend for tests and UI work: no torch model, instant.

Its tokenizer splits text into words, spaces and punctuation with exact character offsets and renders a ChatML
template, so the real segment code runs on it. Log-probs are a fixed function of (token, previous token), so the
same text always scores the same, and text made of common words scores higher than rare strings. Generation is
scripted: a refusal for prompts that look harmful, a worked answer with a think block otherwise, or whatever a
`script` callable returns.

Audit judge prompts (they name the key "lack_of_safety_awareness") get the pattern JSON instead: valid and
deterministic by default; the model refs in AUDIT_SCRIPTS script other judges for tests ("fake-judge-malformed"
never answers JSON, "fake-judge-contradictory" breaks the exclusivity rule, "fake-judge-flaky" answers JSON only
after a correction turn, "fake-judge-fenced" wraps valid JSON in a think block and a ```json fence).

DGR_FAKE_DELAY_S (seconds per batch, default 0) slows scoring down so that tests can kill, cancel and resume a
job part-way through.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dgr_core.backends.base import (
    Generation,
    GenerationConfig,
    ModelDescription,
    register,
    register_describer,
)
from dgr_core.models.loading import ModelSpec
from dgr_core.scoring.engine import BatchStats, TokenScores, plan_batches
from dgr_core.scoring.segments import PROMPT, Encoded
from dgr_core.workspace import Workspace

_TOKEN = re.compile(r"<\|im_start\|>|<\|im_end\|>|\s+|\w+|[^\w\s]")
_HARMFUL = re.compile(r"\b(bomb|weapon|hack|kill|steal|drugs?|poison|malware|explosive|attack)\b", re.I)
COMMON = {"the", "a", "i", "to", "of", "and", "is", "that", "can", "sorry", "not", "help", "answer", "think"}


class FakeTokenizer:
    """Just enough of the Hugging Face tokenizer API for scoring and generation."""

    eos_token, pad_token = "<|im_end|>", "<|endoftext|>"
    chat_template = "fake-chatml"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {self.pad_token: 0, self.eos_token: 1, "<|im_start|>": 2}
        self.pad_token_id, self.eos_token_id = 0, 1

    def _id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab[piece] = len(self.vocab)
        return self.vocab[piece]

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False):
        matches = list(_TOKEN.finditer(text))
        out: dict[str, list[Any]] = {"input_ids": [self._id(m.group()) for m in matches]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(m.start(), m.end()) for m in matches]
        return out

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        inv = {v: k for k, v in self.vocab.items()}
        pieces = [inv[int(i)] for i in ids]
        if skip_special_tokens:
            pieces = [p for p in pieces if p not in (self.eos_token, self.pad_token, "<|im_start|>")]
        return "".join(pieces)

    def apply_chat_template(self, messages, add_generation_prompt: bool = False, tokenize: bool = False, **_):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def _fake_logprob(piece: str, prev: str) -> float:
    if piece.isspace():
        return -0.05
    h = int(hashlib.md5(f"{prev}|{piece}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    base = -0.3 if piece.lower() in COMMON else -1.5 - 4.0 * len(piece) / 12
    return float(base - 1.5 * h)


def _fake_embedding(text: str, dim: int = 16) -> np.ndarray:
    seed = int(hashlib.md5(text.encode()).hexdigest()[:8], 16)
    vec = np.random.default_rng(seed).normal(size=dim)
    vec[0] += 0.02 * len(text.split())  # longer texts drift: gives maps some structure
    return vec.astype(np.float32)


AUDIT_MARKER = '"lack_of_safety_awareness"'


def _audit_json(conversation: list[dict[str, str]], **override: int) -> str:
    """Valid pattern JSON, a fixed function of the judged sample (after "[REQUEST]", where the default template puts
    it): no harmful word -> lack of awareness, else vacillation for "maybe", additions for "ingredients"."""
    text = conversation[0]["content"].partition("[REQUEST]")[2] or conversation[0]["content"]
    lack = int(not _HARMFUL.search(text))
    strong = int(not lack and "maybe" in text.lower())
    adds = int(not lack and "ingredients" in text.lower())
    flags = {"lack_of_safety_awareness": lack, "overthinking": max(strong, adds), "strong_vacillation": strong,
             "weak_vacillation": 0, "harmful_additions": adds, "inconsistency": 0, **override}
    return json.dumps({"analysis": "scripted fake judge", **flags})


AUDIT_SCRIPTS: dict[str, Callable[[list[dict[str, str]]], str]] = {
    "fake-judge-malformed": lambda conv: "The trace looks fine to me; no JSON here.",
    "fake-judge-contradictory": lambda conv: _audit_json(conv, lack_of_safety_awareness=1, overthinking=1,
                                                         strong_vacillation=1),
    "fake-judge-flaky": lambda conv: _audit_json(conv) if len(conv) > 1 else '{"analysis": "cut", "lack_of_',
    "fake-judge-fenced": lambda conv: "<think>\nLet me check each pattern.\n</think>\n\n```json\n"
                                      + _audit_json(conv) + "\n```",
}


def default_script(conversation: list[dict[str, str]]) -> str:
    prompt = conversation[-1]["content"]
    if AUDIT_MARKER in conversation[0]["content"]:
        return _audit_json(conversation)
    if _HARMFUL.search(prompt):
        return "<think>\nThis request could cause harm, so I should refuse.\n</think>\n\nI'm sorry, but I can't help with that."
    numbers = [int(n) for n in re.findall(r"\d+", prompt)[:2]]
    total = sum(numbers) if numbers else 42
    return f"<think>\nAdd the numbers step by step.\n</think>\n\nThe answer is {total}."


@register("fake")
class FakeBackend:
    name = "fake"

    def __init__(self, model: ModelSpec | None = None, ws: Workspace | None = None,
                 script: Callable[[list[dict[str, str]]], str] | None = None):
        self.model = model or ModelSpec("fake")
        self.tokenizer = FakeTokenizer()
        self.script = script or AUDIT_SCRIPTS.get(self.model.ref, default_script)

    def identity(self) -> dict[str, Any]:
        return {"name": "fake", "ref": self.model.ref, "backend": self.name, "dtype": "float32",
                "device_kind": "cpu", "tokenizer_hash": "fake-v1"}

    def score(self, samples: list[Encoded], *, layer: int = -1, token_budget: int = 0,
              on_batch: Callable[[BatchStats], None] | None = None) -> Iterator[TokenScores]:
        for batch in plan_batches([len(s.input_ids) for s in samples], token_budget or 4096):
            group = [samples[i] for i in batch]
            time.sleep(float(os.environ.get("DGR_FAKE_DELAY_S", "0") or 0))
            if on_batch:
                width = max(len(s.input_ids) for s in group)
                on_batch(BatchStats(len(group), sum(len(s.input_ids) for s in group), width * len(group), 0.001))
            yield from (self._score_one(s, layer) for s in group)

    def _score_one(self, s: Encoded, layer: int) -> TokenScores:
        inv = {v: k for k, v in self.tokenizer.vocab.items()}
        pieces = [inv[int(i)] for i in s.input_ids]
        pos = np.nonzero(s.segments > PROMPT)[0]
        pos = pos[pos > 0]
        logps = np.array([_fake_logprob(pieces[p], pieces[p - 1]) for p in pos], dtype=np.float32)
        ranks = np.maximum(1, np.round(-logps * 3)).astype(np.int32)
        text = "".join(pieces[p] for p in pos)
        return TokenScores(s.key, s.input_ids[pos].astype(np.int32), logps, ranks, s.segments[pos],
                           _fake_embedding(text) + 0.01 * layer, s.truncated)

    def generate(self, conversations: list[list[dict[str, str]]], cfg: GenerationConfig,
                 on_done: Callable[[int], None] | None = None) -> list[Generation]:
        out: list[Generation] = []
        for conv in conversations:
            text = self.script(conv)
            n = len(self.tokenizer(text)["input_ids"])
            if n > cfg.max_new_tokens:  # cut like a real model would be
                ids = self.tokenizer(text)["input_ids"][: cfg.max_new_tokens]
                gen = Generation(self.tokenizer.decode(ids), "length", cfg.max_new_tokens)
            else:
                gen = Generation(text, "stop", n)
            out.extend(Generation(gen.text, gen.finish_reason, gen.n_tokens) for _ in range(max(1, cfg.n)))
            if on_done:
                on_done(1)
        return out


@register_describer("fake", weight_files=False)
def describe(spec: ModelSpec, ws: Workspace) -> ModelDescription:
    fake = FakeBackend(spec, ws)
    return ModelDescription(spec, "fake", fake.tokenizer, fake.identity)
