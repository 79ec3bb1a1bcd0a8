"""CLI parity for the read-only pages: `dgr shift`, `dgr compare`, `dgr safety-tax`, `dgr report`.

Each command calls the same core functions its page calls (the page and the command differ only in how they ask):

    dgr shift demo-gsm8k-100 demo-external-refusal --model demo [--segment answer] [--csv stats.csv]
    dgr compare demo-external-refusal demo-external-refusal-refined --export out/ [--n 5] [--order delta]
    dgr safety-tax [--reference demo-self] [--n 10] [--csv table.csv] [--json table.json]
    dgr report --out report.html [--title "Lab meeting"] [--no-budget]

They read caches only (no model loads): unscored datasets are named with the `dgr score` command that scores them.
Flags that set a config field are built from that field (`dgr_core.config.add_arguments`), so a default is
declared once, on the dataclass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from dgr_core.config import add_arguments, from_args
from dgr_core.errors import DGRError
from dgr_core.models.loading import ModelSpec
from dgr_core.report import ReportOptions
from dgr_core.scoring.api import NLL_SEGMENTS, ScoreConfig
from dgr_core.workspace import Workspace

SCORE_FLAGS = ("mode", "max_length", "layer", "think_open", "think_close")


def _score_config(args: argparse.Namespace) -> ScoreConfig:
    from dgr_core.cli import backend_of
    model = from_args(ModelSpec, args, ref=args.model)
    return from_args(ScoreConfig, args, model=model, backend=backend_of(args))


def _add_score_args(p: argparse.ArgumentParser) -> None:
    from dgr_core.cli import add_model_args

    add_model_args(p)
    add_arguments(p, ScoreConfig, only=SCORE_FLAGS)


def _write_table(df: pd.DataFrame, csv: str | None, as_json: str | None) -> None:
    if csv:
        df.to_csv(csv, index=False)
        print(f"wrote {csv}")
    if as_json:
        Path(as_json).write_text(df.to_json(orient="records", indent=2, force_ascii=False), encoding="utf-8")
        print(f"wrote {as_json}")


def _unscored(missing: list[str], cfg: ScoreConfig) -> DGRError:
    cmds = "; ".join(f"dgr score --dataset {n} --model {cfg.model.ref} --backend {cfg.backend}" for n in missing)
    return DGRError(f"Not scored with this model and settings: {', '.join(missing)}. Score them first: {cmds}")


# ---- dgr shift -------------------------------------------------------------------------------------------------

def cmd_shift(args: argparse.Namespace) -> int:
    """The Shift page's statistics table (and NLL summary) for two or more datasets under one target model."""
    from dgr_core.shift import analysis as A

    ws, cfg = Workspace.default(), _score_config(args)
    handle = A.model_handle(cfg.model, cfg.backend, ws)
    sets, missing = A.load_scored_sets(ws, list(args.datasets), cfg, handle)
    if missing:
        raise _unscored(missing, cfg)
    if len(sets) < 2:
        raise DGRError("dgr shift needs at least two datasets.")
    print(A.nll_summary(sets).to_string())
    results = A.pairwise_stats(ws, sets, all_pairs=args.all_pairs, segment=args.segment, seed=args.seed)
    table = A.shift_stats_frame(results)
    print()
    print(table.drop(columns=["what it measures"], errors="ignore").to_string(index=False))
    _write_table(table, args.csv, args.json)
    return 0


# ---- dgr compare ---------------------------------------------------------------------------------------------

def cmd_compare(args: argparse.Namespace) -> int:
    """The Compare page's pairs in stepping order; `--export DIR` writes each one's self-contained HTML."""
    from dgr_core import compare as C
    from dgr_core.shift import analysis as A

    ws, cfg = Workspace.default(), _score_config(args)
    handle = A.model_handle(cfg.model, cfg.backend, ws)
    names = (args.a, args.b)
    sets = {n: A.load_scored_set(ws, n, cfg, handle) for n in dict.fromkeys(names)}
    df_a, df_b = A.dataset_frame(ws, args.a), A.dataset_frame(ws, args.b)
    pairs = C.pair_rows(df_a, df_b)
    scores = [s.result.table if (s := sets[n]) is not None else None for n in names]
    table = C.order_pairs(C.pair_table(pairs, *scores), args.order, args.segment, category=args.category)
    if table.empty:
        raise DGRError(f"No rows of {args.a} and {args.b} share a prompt (nor a parent_id).")
    table = table.head(args.n) if args.n else table
    print("\n".join(C.pair_labels(table, args.segment)))
    if args.export:
        unscored = [n for n, s in sets.items() if s is None]
        if unscored:
            print(f"note: {', '.join(unscored)} not scored: tokens are exported uncoloured.", file=sys.stderr)
        for path in export_pairs(table, df_a, df_b, names, sets, handle, cfg, Path(args.export), args.diff):
            print(f"wrote {path}")
    return 0


def export_pairs(table: pd.DataFrame, df_a: pd.DataFrame, df_b: pd.DataFrame, names: tuple[str, str],
                 sets: dict[str, Any], handle: Any, cfg: ScoreConfig, folder: Path, part: str) -> list[Path]:
    """One HTML file per pair, exactly what the Compare page's "Download HTML" gives for it."""
    from dgr_core import compare as C

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for _, pair in table.iterrows():
        rows = (df_a.iloc[int(pair["pos_a"])].to_dict(), df_b.iloc[int(pair["pos_b"])].to_dict())
        views = tuple(_view(row, sets[name], handle, cfg) for row, name in zip(rows, names, strict=True))
        diff = C.diff_html(C.word_diff(str(rows[0].get(part) or ""), str(rows[1].get(part) or "")))
        doc = C.comparison_document(names, rows, views, pair, diff=diff, model=str(handle.identity.get("ref", "")))
        path = folder / C.export_name(rows, "html")
        path.write_text(doc, encoding="utf-8")
        out.append(path)
    return out


def _view(row: dict, scored: Any, handle: Any, cfg: ScoreConfig) -> Any:
    from dgr_core import compare as C

    if scored is None:
        return C.unscored_view(row, handle.tokenizer, cfg.render_config())
    return C.token_view(row, scored.result.arrays(str(row["id"])), handle.tokenizer, cfg.render_config())


# ---- dgr safety-tax ------------------------------------------------------------------------------------------

def cmd_safety_tax(args: argparse.Namespace) -> int:
    """The Safety-tax page's results table (and, with --x/--y, the shift-vs-tax fit) from the finished runs."""
    from dgr_core.safety_tax import collect, fit_line, format_table, results_table, scatter_frame

    data = collect(Workspace.default(), backend=args.backend, reference=args.reference)
    for run_id, why in data.skipped:  # named even when no readable training run is left
        print(f"skipped {run_id}: {why}", file=sys.stderr)
    if data.empty:
        raise DGRError("No finished training runs with evaluations yet (see the Safety-tax page for the steps).")
    table = results_table(data, args.n)
    print(format_table(table).to_string(index=False))
    if args.x and args.y:
        frame = scatter_frame(data, args.x, args.y)
        print(f"\n{args.x} vs {args.y}: {fit_line(frame['x'], frame['y']).summary()}")
    _write_table(table, args.csv, args.json)
    return 0


# ---- dgr report ----------------------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    """The Report page's self-contained HTML, options from the flags (defaults: ReportOptions' fields)."""
    from dgr_core.report import build_report

    opts = from_args(ReportOptions, args)
    out = Path(args.out)
    out.write_text(build_report(Workspace.default(), opts), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


# ---- registration ----------------------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shift", help="shift statistics of two or more scored datasets (the Shift page's table)")
    p.add_argument("datasets", nargs="+", help="dataset names; the first is the reference")
    _add_score_args(p)
    p.add_argument("--segment", default="total", choices=list(NLL_SEGMENTS))
    p.add_argument("--all-pairs", action="store_true", help="every pair, not only each set against the first")
    p.add_argument("--seed", type=int, default=0, help="bootstrap / permutation seed")
    p.add_argument("--csv", default=None, help="write the statistics table as CSV")
    p.add_argument("--json", default=None, help="write the statistics table as JSON records")
    p.set_defaults(fn=cmd_shift)

    p = sub.add_parser("compare", help="pairs of two datasets by ΔNLL; --export writes the Compare page's HTML")
    p.add_argument("a", help="dataset A (reference)")
    p.add_argument("b", help="dataset B")
    _add_score_args(p)
    p.add_argument("--order", default="delta", help="delta (largest ΔNLL first), id or category")
    p.add_argument("--segment", default="total", choices=list(NLL_SEGMENTS))
    p.add_argument("--category", default=None)
    p.add_argument("--n", type=int, default=10, help="pairs to list / export (0 = all)")
    p.add_argument("--diff", default="answer", choices=["answer", "reasoning"], help="word diff of this part")
    p.add_argument("--export", default=None, metavar="DIR", help="write one self-contained HTML file per pair")
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("safety-tax", help="the paper-style results table of the finished runs (CSV / JSON)")
    p.add_argument("--backend", default="hf", help="whose score cache the shift is read from")
    p.add_argument("--reference", default=None, help="reference dataset for the ΔNLL statistics")
    p.add_argument("--n", type=int, default=None, help="training size of the table (default: largest per dataset)")
    p.add_argument("--x", default=None, help="a shift statistic key (e.g. nll_total) for the fit")
    p.add_argument("--y", default=None, help="a reasoning metric key (e.g. reasoning_drop_avg) for the fit")
    p.add_argument("--csv", default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(fn=cmd_safety_tax)

    p = sub.add_parser("report", help="the Report page's self-contained HTML report")
    p.add_argument("--out", default="dgr-report.html", help="the HTML file to write")
    add_arguments(p, ReportOptions)
    p.set_defaults(fn=cmd_report)
