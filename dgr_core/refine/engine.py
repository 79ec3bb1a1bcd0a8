"""The refinement engine: prompt the target model per sample, parse and filter its rewrites, build the refined
dataset with provenance. No job machinery here (dgr_core.refine.job drives it); every step is a plain function.

    records = generate_chunk(backend, rows, "joint", template, GenerationConfig(max_new_tokens=512))
    outcomes = evaluate_records(df, records, "joint", FilterConfig())
    refined = build_refined(df, outcomes, model_name=..., template=..., generation=..., mode="joint")

A *record* is what the model produced for one sample, as stored (one JSON line each) in the run's
`generations.jsonl`: `{"id", "source_hash", "outputs": [{"text", "finish_reason", "n_tokens"}, ...]}` (two outputs
in separate mode; none, with `skipped`, for a sample without a prompt). Records are the unit a resumed job reuses;
`source_hash` makes a resumed job regenerate a sample whose text changed in the meantime.

A refined row keeps every column of its parent, with `id = f"{parent_id}-r"`, the rewritten reasoning / answer
(or the original ones when the rewrite fell back) and the provenance columns in `PROVENANCE_COLUMNS`.

Thinking models. When the target model's generation prompt already opens a think block (R1-Distill), its output
is stored with that open tag in front (`dgr_core.render.full_reply`), so the record holds the whole reply. With a
delimited template (`templates.REWRITE_TAGS`; the record says which blocks each step asked for in `delimited`),
the rewrite is taken from the delimiters written after the model's LAST `</think>`; the model's thinking about
the task goes to the `refine_thinking` column (provenance: shown, never trained on). A missing, doubled or nested
delimiter, or a think block never closed, makes the sample fall back with a named reason (`missing_delimiters`,
`doubled_delimiters`, `nested_delimiters`, `unclosed_think`). In self mode the model's own think block is the
reasoning and the answer is what follows its last `</think>`.

Self mode is different on two counts: the model's own answer has no decision or length to keep, so only the
well-formedness checks apply; and a failed answer is *dropped*, not replaced by the original, because the self set
is the reference for the model's own distribution and an external response in it would hide the very shift it
measures. Every failed sample (either way) is listed in the run's `fallbacks.jsonl` with its reason.

Parsing a record into a rewrite (the delimited contract, step outputs, self mode) lives in
`dgr_core.refine.parsing`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.backends.base import Generation, GenerationConfig
from dgr_core.data.loaders import safe_name
from dgr_core.data.think import join_think
from dgr_core.errors import SpecError
from dgr_core.models.loading import DEMO_ALIASES, ModelSpec
from dgr_core.refine.filters import REASONS, FilterConfig, Rewrite, check_judge, reason_code, run_filters
from dgr_core.refine.parsing import parse_delimited, parse_outcome, reasoning_step_text
from dgr_core.refine.templates import (
    STEP1_OUTPUT,
    delimited_fields,
    needs_reasoning,
    render_template,
    split_parts,
)
from dgr_core.refine.templates import resolve_template as _resolve_template
from dgr_core.render import full_reply, opened_think, template_facts
from dgr_core.workspace import Workspace, append_jsonl

PROVENANCE_COLUMNS = ["parent_id", "refine_model", "template_hash", "generation", "fell_back", "fallback_reason",
                      "raw_output", "refine_thinking"]
GENERATIONS_FILE = "generations.jsonl"
FALLBACKS_FILE = "fallbacks.jsonl"
FALLBACK_COLUMNS = ["parent_id", "reason", "prompt", "raw_output"]
REFINED_SUFFIX = "-r"


def text(value: Any) -> str:
    """A cell as text: None and NaN become ''."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


# ---- the dataset check (before any model loads) ----------------------------------------------------------

def check_dataset(df: pd.DataFrame, mode: str, name: str) -> None:
    """SpecError if the dataset cannot feed this mode: no rows, no prompts, no reasoning at all in a mode that
    restates reasoning, or duplicate ids (a resumed job keys finished samples by id)."""
    where = f"refine: dataset '{name}'"
    if df.empty:
        raise SpecError(f"{where} has no rows.")
    if not any(text(p).strip() for p in df["prompt"]):
        raise SpecError(f"{where} has no prompts (the prompt column is empty in every row); re-import it with a "
                        "column mapped to 'prompt'.")
    if needs_reasoning(mode) and not any(text(r).strip() for r in df["reasoning"]):
        raise SpecError(f"{where} is answer-only (no reasoning in any row), so {mode} mode has no reasoning to "
                        "restate; use mode 'self' (the model answers from scratch), or re-import the data with "
                        "a reasoning column or responses that contain <think> blocks.")
    ids = df["id"].astype(str)
    dupes = sorted(set(ids[ids.duplicated()]))
    if dupes:
        raise SpecError(f"{where} has duplicate ids ({', '.join(dupes[:5])}{' …' if len(dupes) > 5 else ''}); "
                        "ids must be unique to track which samples are done.")


def default_expect_think(model_ref: str) -> bool:
    """Whether to require a <think> block by default: yes for the reasoning models DGR is about, no for the
    embedded demo (SmolLM2-135M-Instruct never writes one, so every rewrite would fall back as `no_think`)."""
    return model_ref not in DEMO_ALIASES


def select_rows(df: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """The first `limit` rows (all when None): quick runs look at the head of the dataset."""
    return (df.head(limit) if limit else df).reset_index(drop=True)


def default_output_name(dataset: str, model_ref: str, mode: str) -> str:
    """`{dataset}-refined-{model}` (`-self-` for self mode, whose output is a different thing)."""
    short = "demo" if model_ref in DEMO_ALIASES else model_ref.rstrip("/\\").replace("\\", "/").split("/")[-1]
    kind = "self" if mode == "self" else "refined"
    return safe_name(f"{dataset}-{kind}-{short}", what="dataset name")


# ---- generation -------------------------------------------------------------------------------------------

def source_hash(row: dict[str, Any]) -> str:
    fields = [text(row.get(k)) for k in ("prompt", "reasoning", "answer")]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()[:16]


def _conversation(part: str, row: dict[str, Any]) -> list[dict[str, str]]:
    # One user turn: the target model's own chat template wraps it inside backend.generate.
    return [{"role": "user", "content": render_template(part, row)}]


def _output(g: Generation, opened: str = "") -> dict[str, Any]:
    return {"text": full_reply(g.text, opened), "finish_reason": g.finish_reason, "n_tokens": int(g.n_tokens)}


def model_thinks(tokenizer: Any) -> bool:
    """Whether the target model's chat template knows think blocks (found by rendering, `dgr_core.render`)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return False
    return template_facts(tokenizer).thinks


def resolve_template(mode: str, template: str, tokenizer: Any) -> str:
    """The template a run sends to this model (the delimited default for thinking models; see templates)."""
    return _resolve_template(mode, template, model_thinks(tokenizer))


def generate_chunk(backend: Any, rows: list[dict[str, Any]], mode: str, template: str,
                   gen: GenerationConfig) -> list[dict[str, Any]]:
    """One record per row, in order: one generation per sample (two in separate mode, the second seeing the
    first's reasoning as {rewritten_reasoning}). Rows without a prompt are skipped, not sent."""
    parts, fields = split_parts(template), delimited_fields(template)
    opened = opened_think(getattr(backend, "tokenizer", None))
    todo = [r for r in rows if text(r.get("prompt")).strip()]
    first = backend.generate([_conversation(parts[0], r) for r in todo], gen) if todo else []
    outputs = [[_output(g, opened)] for g in first]
    if mode == "separate" and todo:
        step2 = [_conversation(parts[1], {**r, STEP1_OUTPUT: _step1_reasoning(out[0]["text"], fields[0])})
                 for r, out in zip(todo, outputs, strict=True)]
        for out, g in zip(outputs, backend.generate(step2, gen), strict=True):
            out.append(_output(g, opened))
    by_id = {str(r["id"]): out for r, out in zip(todo, outputs, strict=True)}
    records = []
    for r in rows:
        rec: dict[str, Any] = {"id": str(r["id"]), "source_hash": source_hash(r), "outputs": by_id.get(str(r["id"]), [])}
        if any(fields):
            rec["delimited"] = [list(f) for f in fields]
        if str(r["id"]) not in by_id:
            rec["skipped"] = "empty_prompt"
        records.append(rec)
    return records


def _step1_reasoning(raw: str, fields: tuple[str, ...]) -> str:
    """What the answer step sees as {rewritten_reasoning}: the delimited rewrite when the step asked for one (the
    model's thinking about the task stays out), else the plain reasoning-step text."""
    if "reasoning" in fields:
        parsed = parse_delimited(raw, fields)
        if not parsed.error:
            return parsed.values["reasoning"]
    return reasoning_step_text(raw)


def read_generations(path: Path) -> dict[str, dict[str, Any]]:
    """Finished records by sample id; a line cut by a kill (unparseable) is ignored and regenerated."""
    out: dict[str, dict[str, Any]] = {}
    if not Path(path).is_file():
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            out[str(rec["id"])] = rec
    return out


def append_generations(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records as JSON lines and flush them to disk: a kill after this returns loses nothing."""
    append_jsonl(path, records)  # cuts a line torn by an earlier kill first, then appends and fsyncs


def pending_rows(df: pd.DataFrame, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without a finished record for their current text."""
    return [r for r in df.to_dict("records")
            if done.get(str(r["id"]), {}).get("source_hash") != source_hash(r)]


# ---- filtering (parsing: dgr_core.refine.parsing) --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one sample: its rewrite, and whether it passed every filter (else why not)."""

    id: str
    rewrite: Rewrite | None
    ok: bool
    reason: str = ""
    thinking: str = ""  # the model's thinking about the rewriting task (provenance, never trained on)


def filters_for_mode(filters: FilterConfig, mode: str) -> FilterConfig:
    """Self mode keeps only the well-formedness checks: the model's own answer has no original decision or length
    to stay close to (a self answer that complies where the external set refused is the finding, not an error)."""
    if mode != "self":
        return filters
    return replace(filters, refusal_must_match=False, min_length_ratio=0.0, max_length_ratio=0.0)


def evaluate_records(df: pd.DataFrame, records: dict[str, dict[str, Any]], mode: str,
                     filters: FilterConfig) -> list[Outcome]:
    """Parse and filter the record of every row, in row order (a row without a record is an error)."""
    filters = filters_for_mode(filters, mode)
    out = []
    for row in df.to_dict("records"):
        rec = records[str(row["id"])]
        if rec.get("skipped"):
            out.append(Outcome(str(row["id"]), None, False, rec["skipped"]))
            continue
        rw, thinking, error = parse_outcome(mode, rec)
        if error:
            out.append(Outcome(str(row["id"]), rw, False, error, thinking))
            continue
        ok, why = run_filters(rw, original_reasoning=text(row.get("reasoning")),
                              original_answer=text(row.get("answer")), cfg=filters)
        out.append(Outcome(str(row["id"]), rw, ok, why, thinking))
    return out


# ---- the optional judge model (Llama-Guard style, dgr_core.evaluate.judge) --------------------------------

def guard_label(verdict: Any) -> str:
    """"safe", "unsafe" or "unknown" from a guard judge's RefusalVerdict (dgr_core.evaluate.judge semantics)."""
    matched = list(getattr(verdict, "matched", []) or [])
    if "guard:unsafe" in matched:
        return "unsafe"
    if "guard:unparsed" in matched:
        return "unknown"
    return "safe"


def apply_judge(df: pd.DataFrame, outcomes: list[Outcome], judge: Any) -> list[Outcome]:
    """Judge the rewrites that passed every other filter, and their originals, with a guard `judge`
    (`RefusalJudge.judge(prompts, responses)`); fail where `check_judge` says so."""
    rows = {str(r["id"]): r for r in df.to_dict("records")}
    passed = [o for o in outcomes if o.ok and o.rewrite is not None]
    if not passed:
        return outcomes
    prompts = [text(rows[o.id].get("prompt")) for o in passed]
    originals = [join_think(text(rows[o.id].get("reasoning")), text(rows[o.id].get("answer"))) for o in passed]
    rewrites = [join_think(o.rewrite.reasoning, o.rewrite.answer) for o in passed if o.rewrite is not None]
    labels = [guard_label(v) for v in judge.judge(prompts + prompts, originals + rewrites)]
    for i, o in enumerate(passed):
        o.ok, o.reason = check_judge(labels[i], labels[len(passed) + i])
    return outcomes


# ---- the refined dataset ----------------------------------------------------------------------------------

def build_refined(df: pd.DataFrame, outcomes: list[Outcome], *, model_name: str, template_hash: str,
                  generation: dict[str, Any], mode: str) -> pd.DataFrame:
    """The refined table: parent columns, rewritten (or original) reasoning/answer, provenance. In self mode a
    failed answer is dropped instead of falling back (see the module docstring)."""
    settings = json.dumps({"mode": mode, **generation}, sort_keys=True)
    rows = []
    for row, o in zip(df.to_dict("records"), outcomes, strict=True):
        if mode == "self" and not o.ok:
            continue
        new = dict(row)
        new.update(id=f"{row['id']}{REFINED_SUFFIX}", parent_id=str(row["id"]), refine_model=model_name,
                   template_hash=template_hash, generation=settings, fell_back=not o.ok,
                   fallback_reason="" if o.ok else o.reason, raw_output=o.rewrite.raw if o.rewrite else "",
                   refine_thinking=o.thinking)
        if o.ok and o.rewrite is not None:
            new.update(reasoning=o.rewrite.reasoning, answer=o.rewrite.answer, think_status=o.rewrite.think_status)
        rows.append(new)
    columns = [*df.columns, *[c for c in PROVENANCE_COLUMNS if c not in df.columns]]
    return pd.DataFrame(rows, columns=columns)


def fallback_frame(df: pd.DataFrame, outcomes: list[Outcome]) -> pd.DataFrame:
    """One row per failed sample: parent_id, reason, prompt, raw_output (what the model wrote)."""
    rows = [{"parent_id": o.id, "reason": o.reason, "prompt": text(row.get("prompt")),
             "raw_output": o.rewrite.raw if o.rewrite else ""}
            for row, o in zip(df.to_dict("records"), outcomes, strict=True) if not o.ok]
    return pd.DataFrame(rows, columns=FALLBACK_COLUMNS)


def write_fallbacks(path: Path, fallbacks: pd.DataFrame) -> None:
    """The failed samples as JSON lines (replaced as a whole: the list is rebuilt on every resume)."""
    lines = [json.dumps(r, ensure_ascii=False) for r in fallbacks.to_dict("records")]
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def read_fallbacks(path: Path) -> pd.DataFrame:
    """The failed samples a finished run listed (empty frame if none / no file)."""
    if not Path(path).is_file():
        return pd.DataFrame(columns=FALLBACK_COLUMNS)
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=FALLBACK_COLUMNS)


def fallback_counts(reasons: Sequence[str]) -> dict[str, int]:
    """Failed samples per reason code, most frequent first."""
    return dict(Counter(reason_code(r) for r in reasons).most_common())


def fallback_table(fallbacks: pd.DataFrame, n: int) -> pd.DataFrame:
    """reason, what it means, count, share of all `n` samples: for the page and the report."""
    rows = [{"reason": code, "meaning": REASONS.get(code, ""), "count": count, "share": count / max(n, 1)}
            for code, count in fallback_counts(fallbacks["reason"].tolist()).items()]
    return pd.DataFrame(rows, columns=["reason", "meaning", "count", "share"])


# ---- the preview's tokenizer ------------------------------------------------------------------------------

def preview_tokenizer(spec: ModelSpec, backend: str, ws: Workspace) -> tuple[Any | None, str]:
    """The target model's tokenizer when it is cheap to get (local files only, nothing converted or downloaded),
    else None and a note saying why the preview is plain text."""
    from dgr_core.backends.base import describe_model, uses_weight_files

    if not uses_weight_files(backend):  # a scripted backend's tokenizer costs nothing
        return describe_model(spec, backend, ws).tokenizer, ""
    path = _local_tokenizer_source(spec, ws)
    if path is None:
        return None, "The demo model is not converted yet (it converts on first use): showing the plain prompt."
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, local_files_only=True,
                                            trust_remote_code=False)
    except Exception:  # noqa: BLE001 - any failure only means "no chat-template preview"
        return None, (f"The tokenizer of {spec.ref!r} is not available locally: showing the plain prompt "
                      "(the model's chat template wraps it at run time).")
    if not getattr(tok, "chat_template", None):
        return None, f"{spec.ref!r} has no chat template: showing the plain prompt."
    return tok, ""


def _local_tokenizer_source(spec: ModelSpec, ws: Workspace) -> str | None:
    if spec.ref in DEMO_ALIASES:
        from dgr_core.models.embedded import READY_MARKER, converted_folder

        folder = converted_folder(ws)
        return str(folder) if (folder / READY_MARKER).is_file() else None
    return spec.ref


# ---- throughput -------------------------------------------------------------------------------------------

class Meter:
    """samples/s, generated tokens/s and ETA for the samples generated in this process (resumed ones excluded)."""

    def __init__(self, total: int, already_done: int, clock: Callable[[], float]):
        self.total, self.done, self.clock = total, already_done, clock
        self.start, self.new, self.tokens = clock(), 0, 0
        self.end: float | None = None

    def begin(self) -> None:
        """Start the clock now (after the model loaded: loading is not throughput)."""
        self.start = self.clock()

    def stop(self) -> None:
        """Freeze the clock when generation ends (judging and scoring are not generation throughput)."""
        self.end = self.clock()

    def add(self, records: list[dict[str, Any]]) -> None:
        self.done += len(records)
        self.new += len(records)
        self.tokens += sum(o.get("n_tokens", 0) for r in records for o in r.get("outputs", []))

    @property
    def seconds(self) -> float:
        return max((self.end if self.end is not None else self.clock()) - self.start, 1e-9)

    def samples_per_s(self) -> float | None:
        return self.new / self.seconds if self.new else None

    def event(self, message: str = "") -> dict[str, Any]:
        rate = self.samples_per_s()
        if rate and message:  # the job panel shows tokens/s and ETA; samples/s goes into the message
            message = f"{message} · {rate:.2f} samples/s"
        return {"done": self.done, "total": self.total, "unit": "samples", "message": message,
                "samples_per_s": round(rate, 3) if rate else None,
                "tokens_per_s": round(self.tokens / self.seconds, 1) if self.new else None,
                "eta_s": round((self.total - self.done) / rate, 1) if rate else None}
