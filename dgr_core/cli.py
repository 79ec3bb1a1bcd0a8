"""`dgr`: the command line of DGR Lens. Everything a page does, a script can do.

    dgr prepare                                   convert the embedded model, create the demo datasets
    dgr datasets list | import PATH [--name N] | show NAME | search NAME PATTERN [--regex] [--in prompt,answer]
    dgr app [--address 127.0.0.1] [--port 8501]  serve the app (the bind address always on the command line)
    dgr score --model demo --dataset STAR-1        (a dataset name, or a file path to import first)
    dgr jobs list | status RUN | cancel RUN | resume RUN | follow RUN
    dgr render --model M --dataset D --row ID --for score|train|generate|refine   what the model sees

Model work runs as a job (a run folder under the workspace, visible in the app); the CLI follows it with a
progress bar, and Ctrl-C cancels it (finished chunks are kept; `dgr jobs resume RUN` continues).
Other packages add subcommands through `register(subparsers)` in the modules listed in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from dgr_core.errors import DGRError
from dgr_core.workspace import Workspace

COMMAND_MODULES = ("dgr_core.refine.cli", "dgr_core.train.cli", "dgr_core.evaluate.cli", "dgr_core.pipeline",
                   "dgr_core.audit.cli", "dgr_core.cli_views")


def cmd_prepare(args: argparse.Namespace) -> int:
    from dgr_core.data.demo import ensure_demo_datasets
    from dgr_core.models.embedded import ensure_converted

    ws = Workspace.default()
    print(f"workspace: {ws.root}")
    print(f"demo model: {ensure_converted(ws)}")
    for info in ensure_demo_datasets(ws):
        print(f"dataset: {info.name} ({info.n_rows} rows, fingerprint {info.fingerprint})")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(Workspace.default())
    if args.action == "list":
        for info in store.list():
            print(f"{info.name:32s} {info.n_rows:7d} rows  {info.fingerprint}  {info.origin}")
    elif args.action == "import":
        info = store.import_file(Path(args.target), name=args.name)
        print(f"imported {info.name}: {info.n_rows} rows, think blocks {info.think_counts}")
    elif args.action == "show":
        df = store.load(args.target)
        print(df.head(args.n).to_string(max_colwidth=60))
    elif args.action == "search":
        return cmd_datasets_search(args)
    return 0


def cmd_datasets_search(args: argparse.Namespace) -> int:
    """`dgr datasets search NAME PATTERN [--regex] [--in prompt,answer]`: matching ids and prompts (exit 1: none)."""
    from dgr_core.data.search import search_dataset

    if not args.target or args.pattern is None:
        raise DGRError("usage: dgr datasets search NAME PATTERN [--regex] [--in prompt,reasoning,answer]")
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    hits = search_dataset(Workspace.default(), args.target, args.pattern, regex=args.regex,
                          case_sensitive=args.case, fields=fields)
    for row in hits.head(args.n if args.n > 0 else None).itertuples():
        print(f"{row.id}\t{' '.join(str(row.prompt).split())[:100]}")
    print(f"{len(hits)} matching rows", file=sys.stderr)
    return 0 if len(hits) else 1


def app_command(address: str, port: int) -> list[str]:
    """The command that serves the app. The bind address is always given on the command line: a config file
    (.streamlit/config.toml) is read only from the working folder, so without it Streamlit listens everywhere."""
    from dgr_core.workspace import REPO_ROOT

    return [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"), "--server.address", address,
            "--server.port", str(port), "--server.headless", "true"]


def cmd_app(args: argparse.Namespace) -> int:
    """`dgr app`: serve the app on 127.0.0.1 (or --address; a non-loopback address needs DGR_ACCESS_TOKEN)."""
    import os
    import subprocess

    from dgr_core.security import is_loopback

    if not is_loopback(args.address) and not os.environ.get("DGR_ACCESS_TOKEN"):
        raise DGRError(f"refusing to listen on {args.address}: anyone who reaches it could use the app. Set "
                       "DGR_ACCESS_TOKEN (the page then asks for it), or keep the default 127.0.0.1.")
    return subprocess.call(app_command(args.address, args.port))


def resolve_dataset(name_or_path: str, ws: Workspace) -> str:
    """A dataset name in the workspace, or a file that is imported first (named after its stem)."""
    from dgr_core.data.store import DatasetStore

    store = DatasetStore(ws)
    if store.exists(name_or_path):
        return name_or_path
    path = Path(name_or_path)
    if path.is_file():
        info = store.import_file(path)
        print(f"imported {path} as dataset {info.name!r} ({info.n_rows} rows)")
        return info.name
    raise DGRError(f"No dataset {name_or_path!r} in the workspace and no such file. `dgr datasets list` shows them.")


def read_template_file(path: str | None) -> str:
    """The text of a `--template-file` (UTF-8), or "" when none was given (the job's default template)."""
    if not path:
        return ""
    file = Path(path)
    if not file.is_file():
        raise DGRError(f"--template-file {file}: no such file.")
    return file.read_text(encoding="utf-8")


def cmd_score(args: argparse.Namespace) -> int:
    from dgr_core.config import from_args
    from dgr_core.jobs import manager
    from dgr_core.models.loading import ModelSpec
    from dgr_core.scoring.api import ScoreConfig
    from dgr_core.scoring.job import ScoreJobConfig

    ws = Workspace.default()
    dataset = resolve_dataset(args.dataset, ws)
    cfg = from_args(ScoreConfig, args, model=from_args(ModelSpec, args, ref=args.model),
                    backend=backend_of(args))
    run = manager.submit(ws, "score", ScoreJobConfig(dataset, cfg).to_dict(), name=f"score-{dataset}")
    return follow(run)


def follow(run_dir: Path) -> int:
    """Show a job's progress as a tqdm bar until it ends; Ctrl-C cancels it."""
    from tqdm import tqdm

    from dgr_core.jobs import manager

    print(f"run: {run_dir}")
    bar = tqdm(total=None, unit="it", dynamic_ncols=True)
    seen = 0
    try:
        while True:
            events = manager.progress_events(run_dir)
            for ev in events[seen:]:
                _update_bar(bar, ev)
            seen = len(events)
            st = manager.status(run_dir)
            if st.get("state") in manager.FINAL:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        manager.cancel(run_dir)
        st = manager.wait(run_dir, 120)
    bar.close()
    return _report_end(run_dir, st)


def _update_bar(bar, ev: dict) -> None:
    if ev.get("total"):
        bar.total = ev["total"]
        bar.unit = ev.get("unit", "it")
    if ev.get("done") is not None:
        bar.n = ev["done"]
    post = {k: ev[k] for k in ("tokens_per_s", "padding", "loss", "message") if ev.get(k) not in (None, "")}
    bar.set_postfix(post, refresh=False)
    bar.refresh()


def _report_end(run_dir: Path, st: dict) -> int:
    """A finished run's typed result as JSON (its `to_dict()`), or its state and error; 0 only when done and
    its result.json reads back."""
    from dgr_core.jobs import manager
    from dgr_core.jobs.results import ResultError

    state = st.get("state")
    if state == "done":
        try:
            res = manager.RunInfo(Path(run_dir), {}, st).result()
        except ResultError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(res.to_dict() if res is not None else {}, indent=2, default=str))
        return 0
    print(f"{state}: {st.get('error') or ''}", file=sys.stderr)
    print(f"log: {Path(run_dir) / 'log.txt'}", file=sys.stderr)
    return 3 if state == "cancelled" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from dgr_core.jobs import manager

    ws = Workspace.default()
    if args.action == "list":
        for r in manager.list_runs(ws):
            print(f"{r.id:60s} {r.kind:9s} {r.state:10s} {r.what}" + (f" · {r.status['error']}"
                                                                      if r.status.get("error") else ""))
        return 0
    run = manager.get_run(ws, args.run).run_dir
    if args.action == "status":
        print(json.dumps(manager.status(run), indent=2))
    elif args.action == "cancel":
        manager.cancel(run)
    elif args.action == "resume":
        manager.resume(run)
        return follow(run)
    elif args.action == "follow":
        return follow(run)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Print one row as the model sees it for a purpose: exact text, segments marked, tokens per segment."""
    from dgr_core.data.stats import load_tokenizer
    from dgr_core.data.store import DatasetStore
    from dgr_core.model_view import count_think_tokens, format_views, row_views
    from dgr_core.models.loading import ModelSpec
    from dgr_core.render import MARKERS, RenderConfig

    ws = Workspace.default()
    df = DatasetStore(ws).load(resolve_dataset(args.dataset, ws))
    match = df[df["id"].astype(str) == str(args.row)]
    if match.empty:
        raise DGRError(f"No row with id {args.row!r} in {args.dataset!r} (ids look like {df['id'].iloc[0]!r}).")
    spec = ModelSpec(args.model, revision=args.revision, trust_remote_code=args.trust_remote_code)
    tok = load_tokenizer(spec, backend_of(args), ws).tokenizer
    think_open, think_close = MARKERS[args.markers]
    thinking = {"auto": None, "on": True, "off": False}[args.thinking]
    cfg = RenderConfig(args.mode, think_open, think_close, args.max_length, thinking)
    template = Path(args.template_file).read_text(encoding="utf-8") if args.template_file else ""
    views = row_views(match.iloc[0].to_dict(), tok, args.purpose, cfg, mode=args.refine_mode, template=template)
    print(format_views(views))
    for view in views:
        n_open = count_think_tokens(view, tok, think_open.strip())
        if n_open >= 0:
            print(f"{think_open.strip()} tokens in the ids ({view.title.split(':')[0]}): {n_open}")
    return 0


def add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="print one row exactly as the model sees it (segments marked, tokens counted)")
    p.add_argument("--dataset", required=True, help="a dataset name or a file to import")
    p.add_argument("--row", required=True, help="the row's id")
    p.add_argument("--for", dest="purpose", default="score", choices=["score", "train", "generate", "refine"])
    add_model_args(p)
    p.add_argument("--mode", default="chat", choices=["chat", "raw"], help="chat template or raw text")
    p.add_argument("--markers", default="r1", choices=["r1", "s1"], help="<think> tags or s1's <|im_start|>think")
    p.add_argument("--thinking", default="auto", choices=["auto", "on", "off"],
                   help="enable_thinking for templates that read it (Qwen3); auto = the template's default")
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--refine-mode", default="joint", choices=["joint", "separate", "self"])
    p.add_argument("--template-file", default=None, help="refine template (default: the mode's, for this model)")
    p.set_defaults(fn=cmd_render)


AUTO = "auto"
BACKEND_CHOICES = (AUTO, "hf", "vllm", "fake")
BACKEND_HELP = ("auto (default: vLLM for refine / evaluate / audit generation where vLLM and a GPU are present, else "
                "hf; scoring always hf, as in the app's sidebar), hf, vllm (GPU) or fake (tests)")


def backend_of(args: argparse.Namespace, *, generation: bool = False) -> str:
    """`--backend` resolved for this command ("auto" -> hf or vllm, as the app's sidebar does)."""
    from dgr_core.backends.base import resolve_backend

    return resolve_backend(args.backend, generation=generation)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", help="'demo' (embedded SmolLM2-135M-Instruct), a folder or a HF id")
    p.add_argument("--revision", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--backend", default=AUTO, choices=BACKEND_CHOICES, help=BACKEND_HELP)
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off by default)")


def build_parser() -> argparse.ArgumentParser:
    from dgr_core.config import add_arguments
    from dgr_core.scoring.api import ScoreConfig

    parser = argparse.ArgumentParser(prog="dgr", description="DGR Lens: distribution shift of safety SFT data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="convert the embedded model and create the demo datasets").set_defaults(fn=cmd_prepare)
    p = sub.add_parser("datasets", help="list, import, show or search datasets")
    p.add_argument("action", choices=["list", "import", "show", "search"])
    p.add_argument("target", nargs="?")
    p.add_argument("pattern", nargs="?", help="search: the text or (--regex) regular expression")
    p.add_argument("--name", default=None)
    p.add_argument("-n", type=int, default=5, help="rows shown (show; search: 0 = all matches, default 5)")
    p.add_argument("--regex", action="store_true", help="search: PATTERN is a regular expression (1 s limit)")
    p.add_argument("--case", action="store_true", help="search: match case")
    p.add_argument("--in", dest="fields", default="prompt,reasoning,answer",
                   help="search: fields to search, comma-separated (default prompt,reasoning,answer)")
    p.set_defaults(fn=cmd_datasets)
    p = sub.add_parser("app", help="serve the app (default 127.0.0.1:8501)")
    p.add_argument("--address", default="127.0.0.1", help="bind address (non-loopback needs DGR_ACCESS_TOKEN)")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(fn=cmd_app)
    p = sub.add_parser("score", help="per-token log-likelihoods and embeddings under the target model")
    p.add_argument("--dataset", required=True, help="a dataset name or a file to import")
    add_model_args(p)
    add_arguments(p, ScoreConfig, only=("mode", "layer", "max_length", "token_budget"))  # defaults: the fields
    p.set_defaults(fn=cmd_score)
    p = sub.add_parser("jobs", help="list, inspect, cancel, resume or follow runs")
    p.add_argument("action", choices=["list", "status", "cancel", "resume", "follow"])
    p.add_argument("run", nargs="?")
    p.set_defaults(fn=cmd_jobs)
    add_render_parser(sub)
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except DGRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
