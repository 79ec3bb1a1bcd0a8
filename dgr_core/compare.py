"""Side-by-side comparison of two datasets that share prompts: pairing, per-token surprisal HTML, word diff, export.

    from dgr_core.compare import pair_rows, pair_table, token_view, token_html, word_diff, comparison_html
    pairs = pair_rows(original_df, refined_df)            # id_a, id_b, prompt, category (+ attrs["paired_by"])
    table = pair_table(pairs, scores_a.table, scores_b.table)   # NLL by segment of both sides and ΔNLL
    view = token_view(row, result, sample_id, tokenizer, score_cfg)   # pieces, log-probs, ranks, segments
    html = token_html(view.pieces, view.logprobs, view.ranks, view.segments)

Pairing: by `parent_id -> id` when one side was derived from the other (a refined or self-generated set keeps its
parent's id), by a shared `parent_id` when both were derived from one original, else by the prompt text with
whitespace normalized. Repeated prompts pair in order of appearance (1st with 1st, 2nd with 2nd).

Token colours: each token's background encodes its surprisal −log p (nats) under the target model, from the cached
per-token arrays. A multi-byte character split over several byte-level tokens is shown once, on the token that
completes it, coloured by the summed log-prob of its tokens (the log-probability of the whole character), with
every token's log-prob listed in the tooltip, so no token's score is dropped. All text is escaped with
`html.escape` and styles are inline, so the HTML is safe to embed and needs no external assets.
"""

from __future__ import annotations

import difflib
import html
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dgr_core.errors import DataError
from dgr_core.scoring.api import NLL_SEGMENTS
from dgr_core.scoring.segments import (
    ANSWER,
    CLOSE,
    END,
    OPEN,
    PROMPT,
    REASONING,
    SEGMENT_NAMES,
    RenderConfig,
    render,
    token_pieces,
)

SEGMENTS = NLL_SEGMENTS
# Surprisal (nats) at which a token gets the darkest colour; ~e^-10 = 1 in 22,000.
SURPRISAL_MAX = 10.0
_WS = re.compile(r"\s+")

# ---------------------------------------------------------------------------------------------------------------
# Pairing
# ---------------------------------------------------------------------------------------------------------------


def normalize_prompt(text: Any) -> str:
    """Prompt text with runs of whitespace collapsed to one space and the ends stripped (None -> "")."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return _WS.sub(" ", str(text)).strip()


def _has_parent(df: pd.DataFrame) -> bool:
    return "parent_id" in df.columns and df["parent_id"].notna().any()


def _match(keys_a: pd.Series, keys_b: pd.Series) -> pd.DataFrame:
    """Row positions (pos_a, pos_b) whose keys are equal; the k-th repeat of a key in A pairs with its k-th in B."""
    a = pd.DataFrame({"key": keys_a.to_numpy(), "pos_a": np.arange(len(keys_a))})
    b = pd.DataFrame({"key": keys_b.to_numpy(), "pos_b": np.arange(len(keys_b))})
    a = a[a["key"].notna() & (a["key"] != "")]
    b = b[b["key"].notna() & (b["key"] != "")]
    a["rep"] = a.groupby("key").cumcount()
    b["rep"] = b.groupby("key").cumcount()
    return a.merge(b, on=["key", "rep"]).sort_values("pos_a")[["pos_a", "pos_b"]]


def _as_str(series: pd.Series) -> pd.Series:
    return series.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))


def _strategies(df_a: pd.DataFrame, df_b: pd.DataFrame) -> list[tuple[str, pd.Series, pd.Series]]:
    """Candidate pairings, most precise first."""
    out = []
    if _has_parent(df_b):
        out.append(("parent_id", _as_str(df_a["id"]), _as_str(df_b["parent_id"])))
    if _has_parent(df_a):
        out.append(("parent_id", _as_str(df_a["parent_id"]), _as_str(df_b["id"])))
    if _has_parent(df_a) and _has_parent(df_b):
        out.append(("shared parent_id", _as_str(df_a["parent_id"]), _as_str(df_b["parent_id"])))
    out.append(("prompt", df_a["prompt"].map(normalize_prompt), df_b["prompt"].map(normalize_prompt)))
    return out


def pair_rows(df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.DataFrame:
    """Pairs of rows answering the same prompt: columns id_a, id_b, prompt, category (of A), pos_a, pos_b.

    `result.attrs["paired_by"]` says which rule matched ("parent_id", "shared parent_id" or "prompt"); the first
    rule that pairs any rows wins. An empty frame (with those columns) when nothing pairs.
    """
    for df, side in ((df_a, "first"), (df_b, "second")):
        missing = [c for c in ("id", "prompt") if c not in df.columns]
        if missing:
            raise DataError(f"the {side} dataset lacks column(s) {', '.join(missing)}; cannot pair rows")
    matched, used = pd.DataFrame({"pos_a": [], "pos_b": []}, dtype=int), "prompt"
    for name, keys_a, keys_b in _strategies(df_a.reset_index(drop=True), df_b.reset_index(drop=True)):
        matched, used = _match(keys_a, keys_b), name
        if len(matched):
            break
    a, b = df_a.reset_index(drop=True), df_b.reset_index(drop=True)
    pos_a, pos_b = matched["pos_a"].to_numpy(int), matched["pos_b"].to_numpy(int)
    category = a["category"].to_numpy()[pos_a] if "category" in a.columns else [""] * len(pos_a)
    out = pd.DataFrame({
        "id_a": a["id"].astype(str).to_numpy()[pos_a], "id_b": b["id"].astype(str).to_numpy()[pos_b],
        "prompt": a["prompt"].to_numpy()[pos_a], "category": category, "pos_a": pos_a, "pos_b": pos_b,
    })
    out.attrs["paired_by"] = used
    return out


def pair_table(pairs: pd.DataFrame, scores_a: pd.DataFrame | None, scores_b: pd.DataFrame | None) -> pd.DataFrame:
    """`pairs` with NLL and token counts of both sides (suffix _a/_b) and delta_nll_<segment> = B − A.

    A side without scores (None) leaves its columns NaN, so the table still lists every pair.
    """
    out = pairs.copy()
    for side, scores in (("a", scores_a), ("b", scores_b)):
        ids = out[f"id_{side}"]
        for seg in SEGMENTS:
            for metric in ("nll", "n_tokens"):
                col = f"{metric}_{seg}"
                values = scores.set_index(scores["id"].astype(str))[col] if scores is not None else None
                out[f"{col}_{side}"] = ids.map(values[~values.index.duplicated()]) if values is not None else np.nan
    for seg in SEGMENTS:
        out[f"delta_nll_{seg}"] = out[f"nll_{seg}_b"] - out[f"nll_{seg}_a"]
    return out


def pair_categories(table: pd.DataFrame) -> list[str]:
    """The distinct non-empty categories of a pair table, sorted."""
    return sorted({str(c) for c in table["category"].fillna("")} - {""})


def order_pairs(table: pd.DataFrame, by: str = "delta", segment: str = "total",
                category: str | None = None) -> pd.DataFrame:
    """Pairs in stepping order: "delta" = largest ΔNLL first (unscored last); "category" = by category, then
    largest ΔNLL first within it; anything else keeps the dataset order. `category` keeps only that category."""
    if category is not None:
        table = table[table["category"].fillna("").astype(str) == str(category)]
    col = f"delta_nll_{segment}"
    if by == "delta":
        return table.sort_values(col, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    if by == "category":
        return table.sort_values(["category", col], ascending=[True, False], na_position="last",
                                 kind="stable").reset_index(drop=True)
    return table.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# Per-token view
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TokenView:
    """One response as the model scored it: token text, log-prob, rank and segment label per token."""

    pieces: list[str]
    logprobs: np.ndarray
    ranks: np.ndarray
    segments: np.ndarray

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def fast_token_pieces(tokenizer, ids: np.ndarray | list[int], block: int = 256) -> list[str]:
    """`token_pieces`, computed block by block (it decodes every prefix, so it is quadratic in length).

    Exact: the blockwise result is kept only if its concatenation equals the decoded text of all ids; a block edge
    inside a multi-byte character or a tokenizer that strips a block's leading space falls back to the full call.
    """
    ids = [int(i) for i in ids]
    if len(ids) <= block:
        return token_pieces(tokenizer, ids)
    pieces: list[str] = []
    for start in range(0, len(ids), block):
        pieces += token_pieces(tokenizer, ids[start : start + block])
    if "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=False):
        return pieces
    return token_pieces(tokenizer, ids)


def response_ids(row: dict, tokenizer, render_cfg: RenderConfig) -> np.ndarray:
    """Ids of the scored tokens of a row (positions > 0 past the prompt), exactly as the scorer selects them."""
    enc = render(row, tokenizer, render_cfg)
    pos = np.nonzero(enc.segments > PROMPT)[0]
    return enc.input_ids[pos[pos > 0]]


def token_view(row: dict, arrays, tokenizer, render_cfg: RenderConfig) -> TokenView:
    """Join a row's cached per-token arrays (`ScoreResult.arrays(id)`) with the text of each scored token.

    The row is re-rendered with the target model's tokenizer and its scored token ids are decoded: with a real
    tokenizer they equal the cached ids (same text, same tokenizer, both in the cache key), and a tokenizer that
    numbers tokens per process (the fake backend) still gives the same tokens in the same order. A length mismatch
    means the cache belongs to other text or settings.
    """
    ids = response_ids(row, tokenizer, render_cfg)
    if len(ids) != len(arrays.logprobs):
        raise DataError(f"sample {row.get('id')}: {len(ids)} tokens when re-rendered but {len(arrays.logprobs)} "
                        "scored; the scores were computed with other settings or text")
    return TokenView(fast_token_pieces(tokenizer, ids), np.asarray(arrays.logprobs, dtype=np.float64),
                     np.asarray(arrays.ranks), np.asarray(arrays.segments))


def plain_view(text: str) -> TokenView:
    """A view of unscored text: one piece, no scores (shown uncoloured)."""
    return TokenView([text], np.array([np.nan]), np.array([0]), np.array([ANSWER]))


def unscored_view(row: dict, tokenizer, render_cfg: RenderConfig) -> TokenView:
    """The tokens of a row that has no scores yet: segments marked, no colours (log-probs NaN, ranks 0)."""
    enc = render(row, tokenizer, render_cfg)
    pos = np.nonzero(enc.segments > PROMPT)[0]
    pos = pos[pos > 0]
    return TokenView(fast_token_pieces(tokenizer, enc.input_ids[pos]), np.full(len(pos), np.nan),
                     np.zeros(len(pos), dtype=np.int64), enc.segments[pos])


@dataclass(frozen=True)
class TokenGroup:
    """What one coloured span shows: `n` tokens from `first` (several when a character spans tokens)."""

    first: int
    n: int
    text: str
    logprob: float  # summed over the group's tokens: the log-probability of the text shown
    segment: int  # segment of the first token


def token_groups(view: TokenView) -> list[TokenGroup]:
    """The view as displayed units: tokens ending inside a multi-byte character join the token completing it."""
    pieces = list(view.pieces)
    return [TokenGroup(first, n, "".join(pieces[first : first + n]),
                       float(np.sum(np.asarray(view.logprobs[first : first + n], dtype=np.float64))),
                       int(view.segments[first]))
            for first, n in _merge_partial(pieces)]


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------

SEGMENT_STYLE = {
    REASONING: ("reasoning", "#1d4ed8"), ANSWER: ("answer", "#047857"), OPEN: ("think open", "#6b7280"),
    CLOSE: ("think close", "#6b7280"), END: ("end of turn", "#6b7280"),
}
CONTAINER_STYLE = ("font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; "
                   "line-height: 1.75; white-space: pre-wrap; word-break: break-word; color: #111827")


def surprisal_color(surprisal: float) -> str:
    """Background colour for a surprisal in nats: transparent at 0, deepening red up to SURPRISAL_MAX."""
    if not math.isfinite(surprisal):
        return "transparent"
    t = min(max(surprisal, 0.0) / SURPRISAL_MAX, 1.0)
    return f"rgba(220, 38, 38, {0.85 * t ** 0.8:.3f})"


def _merge_partial(pieces: list[str]) -> list[tuple[int, int]]:
    """(first token, token count) groups: tokens with an empty piece (part of a character that a later token
    completes) join the next non-empty token; trailing empties form a group of their own."""
    groups, start = [], 0
    for i, piece in enumerate(pieces):
        if piece:
            groups.append((start, i + 1 - start))
            start = i + 1
    if start < len(pieces):
        groups.append((start, len(pieces) - start))
    return groups


def _token_span(pieces, logprobs, ranks, segments, first: int, n: int) -> str:
    text = "".join(pieces[first : first + n])
    lps = [float(x) for x in logprobs[first : first + n]]
    lp = float(sum(lps))
    seg = SEGMENT_NAMES.get(int(segments[first]), str(int(segments[first])))
    if math.isfinite(lp):
        detail = " + ".join(f"{x:.3f}" for x in lps)
        ranks_txt = ", ".join(str(int(r)) for r in ranks[first : first + n])
        tip = (f"token {first}{f'–{first + n - 1}' if n > 1 else ''} · {seg}\nlog p = {detail}"
               f"{f' = {lp:.3f}' if n > 1 else ''}\nsurprisal {-lp:.2f} nats · rank {ranks_txt}")
    else:
        tip = "not scored"
    shown = text if text else "\u00b7"  # a lone partial byte: show a dot so its score stays visible
    style = f"background: {surprisal_color(-lp)}; border-radius: 2px"
    if int(segments[first]) in (OPEN, CLOSE, END):
        style += "; color: #6b7280"
    return (f'<span data-i="{first}" data-n="{n}" data-lp="{lp:.6g}" style="{style}" '
            f'title="{html.escape(tip, quote=True)}">{html.escape(shown)}</span>')


def _segment_label(segment: int) -> str:
    name, color = SEGMENT_STYLE.get(segment, (SEGMENT_NAMES.get(segment, "?"), "#6b7280"))
    return (f'<span data-segment="{html.escape(name)}" style="font-family: system-ui, sans-serif; font-size: 10px; '
            f"color: {color}; border: 1px solid {color}; border-radius: 3px; padding: 0 3px; margin: 0 4px 0 0; "
            f'user-select: none">{html.escape(name)}</span>')


def token_html(pieces: list[str], logprobs: np.ndarray, ranks: np.ndarray, segments: np.ndarray) -> str:
    """A <div> with one coloured <span> per token (see the module docstring), a label where the segment changes.

    Each token span carries data-i (first token index), data-n (tokens shown together) and data-lp (their summed
    log-prob); its title (the hover text) gives the log-prob(s), surprisal, rank(s) and segment.
    """
    if not (len(pieces) == len(logprobs) == len(ranks) == len(segments)):
        raise ValueError(f"pieces, logprobs, ranks and segments differ in length: "
                         f"{len(pieces)}, {len(logprobs)}, {len(ranks)}, {len(segments)}")
    parts, current = [], None
    for first, n in _merge_partial(list(pieces)):
        seg = int(segments[first])
        if seg != current and seg in (REASONING, ANSWER):
            parts.append(_segment_label(seg))
        current = seg
        parts.append(_token_span(pieces, logprobs, ranks, segments, first, n))
    return f'<div class="dgr-tokens" style="{CONTAINER_STYLE}">{"".join(parts)}</div>'


def legend_html() -> str:
    """A small colour key for the surprisal scale."""
    stops = [0, 1, 2, 4, 6, 8, SURPRISAL_MAX]
    cells = "".join(f'<span style="background: {surprisal_color(s)}; padding: 0 6px">{s:g}</span>' for s in stops)
    return (f'<div style="font-family: system-ui, sans-serif; font-size: 11px; color: #374151">surprisal −log p '
            f"(nats): {cells}+ · hover a token for its log-prob and rank</div>")


# ---------------------------------------------------------------------------------------------------------------
# Word diff
# ---------------------------------------------------------------------------------------------------------------

_WORDS = re.compile(r"\S+|\s+")


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """Word-level diff of a -> b as (op, text) runs, op in "equal", "delete" (only in a), "insert" (only in b).

    Concatenating the "equal"+"delete" runs gives back a, and "equal"+"insert" gives back b.
    """
    wa, wb = _WORDS.findall(a or ""), _WORDS.findall(b or "")
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("equal", "".join(wa[i1:i2])))
            continue
        if i2 > i1:
            out.append(("delete", "".join(wa[i1:i2])))
        if j2 > j1:
            out.append(("insert", "".join(wb[j1:j2])))
    return out


def diff_ratio(ops: list[tuple[str, str]]) -> float:
    """Share of characters that are unchanged, over both sides (1 = identical, 0 = nothing in common)."""
    equal = sum(len(t) for op, t in ops if op == "equal")
    total = 2 * equal + sum(len(t) for op, t in ops if op != "equal")
    return 2 * equal / total if total else 1.0


def diff_html(ops: list[tuple[str, str]]) -> str:
    """The diff as HTML: deletions struck through on red, insertions on green, all text escaped."""
    style = {"equal": "", "delete": "background: #fecaca; text-decoration: line-through",
             "insert": "background: #bbf7d0"}
    tag = {"equal": "span", "delete": "del", "insert": "ins"}
    parts = [f'<{tag[op]} style="{style[op]}">{html.escape(text)}</{tag[op]}>' if op != "equal"
             else html.escape(text) for op, text in ops]
    return f'<div class="dgr-diff" style="{CONTAINER_STYLE}">{"".join(parts)}</div>'


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Side:
    """One side of a comparison for export: the dataset name, the sample id and its rendered token HTML."""

    dataset: str
    sample_id: str
    body_html: str


def _stats_rows(stats: dict[str, Any]) -> str:
    rows = []
    for key, value in stats.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(shown)}</td></tr>")
    return "".join(rows)


def comparison_html(title: str, prompt: str, left: Side, right: Side, *, stats: dict[str, Any] | None = None,
                    diff: str = "", model: str = "") -> str:
    """A complete, self-contained HTML document of one comparison (inline CSS, no scripts, no external assets)."""
    css = ("body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#111827}"
           ".cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}"
           ".card{border:1px solid #e5e7eb;border-radius:6px;padding:12px}"
           "h1{font-size:20px}h2{font-size:15px;margin:4px 0 8px}"
           "table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #e5e7eb;padding:2px 8px;"
           "text-align:left}.prompt{white-space:pre-wrap;background:#f9fafb;padding:8px;border-radius:6px}")
    stats_block = f"<h2>Per-sample figures</h2><table>{_stats_rows(stats)}</table>" if stats else ""
    diff_block = f"<h2>Word diff (A → B)</h2>{diff}" if diff else ""
    model_line = f"<p>Target model: <code>{html.escape(model)}</code></p>" if model else ""
    cards = "".join(
        f'<div class="card"><h2>{label}: {html.escape(s.dataset)} · <code>{html.escape(s.sample_id)}</code></h2>'
        f"{s.body_html}</div>" for label, s in (("A", left), ("B", right)))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{css}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{model_line}<h2>Prompt</h2><div class=\"prompt\">{html.escape(prompt)}</div>"
            f"{legend_html()}<div class=\"cols\">{cards}</div>{stats_block}{diff_block}</body></html>")


def export_stats(figures: pd.DataFrame) -> dict[str, Any]:
    """A `sample_figures` table flattened to "<segment>: <figure>" -> value, leaving out missing values."""
    return {f"{seg}: {k}": v for seg, row in figures.iterrows() for k, v in row.items() if pd.notna(v)}


def comparison_document(names: tuple[str, str], rows: tuple[dict, dict], views: tuple[TokenView, TokenView],
                        pair: pd.Series, *, diff: str = "", model: str = "") -> str:
    """One comparison (the pair row of `pair_table`, both rows and their token views) as a self-contained HTML
    document: the prompt, both responses coloured by surprisal, the per-sample figures and the word diff."""
    sides = [Side(name, str(row.get("id")), token_html(v.pieces, v.logprobs, v.ranks, v.segments))
             for name, row, v in zip(names, rows, views, strict=True)]
    return comparison_html(f"{names[0]} vs {names[1]}", str(pair.get("prompt", "")), sides[0], sides[1],
                           stats=export_stats(sample_figures(pair)), diff=diff, model=model)


def export_name(rows: tuple[dict, dict], ext: str) -> str:
    """A file name for one exported comparison, safe on every file system."""
    stem = "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", str(r.get("id")))[:40] for r in rows)
    return f"compare-{stem}.{ext}"


def pair_labels(table: pd.DataFrame, segment: str = "total") -> list[str]:
    """One readable label per pair of an ordered `pair_table`: position, both ids, category and ΔNLL."""
    delta = table.get(f"delta_nll_{segment}", pd.Series(np.nan, index=table.index))
    out = []
    for i, (a, b, cat, d) in enumerate(zip(table["id_a"], table["id_b"], table["category"].fillna(""), delta,
                                           strict=True)):
        shown = f" · ΔNLL {d:+.3f}" if pd.notna(d) else ""
        out.append(f"{i + 1}. {a} ↔ {b}{f' · {cat}' if cat else ''}{shown}")
    return out


def sample_figures(pair: pd.Series) -> pd.DataFrame:
    """One pair's NLL by segment, token counts and ΔNLL as a small table (rows = segments)."""
    rows = []
    for seg in SEGMENTS:
        rows.append({"segment": seg, "NLL A": pair.get(f"nll_{seg}_a"), "NLL B": pair.get(f"nll_{seg}_b"),
                     "ΔNLL (B − A)": pair.get(f"delta_nll_{seg}"), "tokens A": pair.get(f"n_tokens_{seg}_a"),
                     "tokens B": pair.get(f"n_tokens_{seg}_b")})
    return pd.DataFrame(rows).set_index("segment")
