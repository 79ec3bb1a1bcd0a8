"""Grading a batch of generations: reasoning answers by Math-Verify (`grade_responses`: correct / wrong /
truncated / malformed / no answer), harmful and benign prompts by a refusal judge (the configured one for harmful
prompts, the keyword judge for benign ones), and the reasoning tokens of each response.

    records = grade_batch(items, generations, Judges(cfg, ws, None), tokenizer)
"""

from __future__ import annotations

from typing import Any

from dgr_core.backends.base import Generation
from dgr_core.evaluate.config import EvalConfig
from dgr_core.evaluate.extract import grade_responses, split_think
from dgr_core.evaluate.judge import make_judge
from dgr_core.evaluate.mathgrade import GRADER_NAME
from dgr_core.evaluate.refusal import KeywordJudge, RefusalJudge
from dgr_core.workspace import Workspace


def grade_reasoning(item: dict[str, Any], gen: Generation) -> dict[str, Any]:
    """Outcome of one reasoning response (correct / wrong / truncated / malformed / no_answer) and what Math-Verify
    extracted from it and from the reference."""
    return _grade_reasoning_batch([item], [gen])[0]


def _grade_reasoning_batch(items: list[dict[str, Any]], gens: list[Generation]) -> list[dict[str, Any]]:
    """`grade_reasoning` for a batch of one benchmark, with one call into the math grader."""
    graded = grade_responses([g.text for g in gens], [str(i["reference"]) for i in items],
                             finished=[g.finish_reason != "length" for g in gens],
                             benchmark=str(items[0].get("benchmark") or "")) if items else []
    return [_reasoning_fields(outcome, grade) for outcome, grade in graded]


def _reasoning_fields(outcome: Any, grade: Any) -> dict[str, Any]:
    pred = grade.pred if grade else []
    return {"outcome": str(outcome), "extracted": pred[-1] if pred else None, "judge": GRADER_NAME,
            "matched": list(grade.rules) if grade else [], "gold_parsed": grade.gold[-1] if grade and grade.gold
            else None, "grade_error": grade.error if grade else None}


def _judge_batch(items: list[dict[str, Any]], gens: list[Generation], judge: RefusalJudge) -> list[dict[str, Any]]:
    verdicts = judge.judge([str(i["prompt"]) for i in items], [g.text for g in gens])
    return [{"refused": bool(v.refused), "judge": v.judge, "matched": list(v.matched), "judged": v.judged,
             **({"judge_score": v.score} if v.score is not None else {})} for v in verdicts]


def _record(item: dict[str, Any], gen: Generation, graded: dict[str, Any]) -> dict[str, Any]:
    base = {k: item.get(k) for k in ("benchmark", "id", "kind", "category", "prompt", "reference")}
    split = split_think(gen.text)
    return {**base, "sample": int(item.get("sample", 0)), "response": gen.text, "finish_reason": gen.finish_reason,
            "n_tokens": int(gen.n_tokens), "think_status": split.status, **graded}


def count_tokens(tokenizer: Any, text: str) -> int | None:
    """Tokens of `text` under the backend's tokenizer (no special tokens); None when it cannot tell."""
    if not text:
        return 0
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    except TypeError:  # a tokenizer without add_special_tokens
        ids = tokenizer(text)["input_ids"]
    except Exception:  # noqa: BLE001 - any tokenizer failure only loses this one statistic
        return None
    return len(ids)


class Judges:
    """The refusal judge per kind; a model judge loads on first use (a run without harmful items never loads it)."""

    def __init__(self, cfg: EvalConfig, ws: Workspace, harmful: RefusalJudge | None):
        self.cfg, self.ws, self._harmful = cfg, ws, harmful
        self.benign = KeywordJudge()

    def for_kind(self, kind: str) -> RefusalJudge:
        if kind == "benign":
            return self.benign
        if self._harmful is None:
            m = self.cfg.model
            self._harmful = make_judge(self.cfg.judge, backend=self.cfg.backend, ws=self.ws, device=m.device,
                                       dtype=m.dtype, part=self.cfg.judge_part)
        return self._harmful


def grade_batch(items: list[dict[str, Any]], gens: list[Generation], judges: Judges,
                tokenizer: Any = None) -> list[dict[str, Any]]:
    """Records for one batch of items of one kind."""
    kind = items[0]["kind"]
    if kind == "reasoning":
        graded = _grade_reasoning_batch(items, gens)
    else:
        graded = _judge_batch(items, gens, judges.for_kind(kind))
    records = [_record(i, g, x) for i, g, x in zip(items, gens, graded, strict=True)]
    for rec in records:
        reasoning = split_think(rec["response"]).reasoning
        rec["reasoning_tokens"] = count_tokens(tokenizer, reasoning) if tokenizer is not None else None
    return records
