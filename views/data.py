"""Datasets: import safety SFT data (upload, local path, Hugging Face id, known presets), list what the workspace
holds, browse a dataset (search, filters, sort) with prompt / reasoning / answer shown apart, look at its length
statistics in target-model tokens, score it with the target model (a job), or delete it.

Everything here is a widget or a call into `dgr_core.data` (store, loaders, stats); errors are shown and the page
keeps running, and a failed import never touches the datasets already there.

(Named `data.py`, not `datasets.py`: run as a script, its folder is on sys.path and the name would shadow the
Hugging Face `datasets` library.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from dgr_core.data import stats as S
from dgr_core.data.demo import DEMOS, ensure_demo_datasets
from dgr_core.data.loaders import MAX_UPLOAD_BYTES, SUPPORTED_EXTENSIONS, load_upload, safe_name
from dgr_core.data.presets import PRESETS
from dgr_core.data.schema import ColumnMapping, DatasetInfo
from dgr_core.data.shapes import MAPPED_FIELDS
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError, DGRError
from dgr_core.models.loading import DEMO_ALIASES
from dgr_core.scoring.job import ScoreJobConfig
from dgr_core.security import ROOTS_ENV, check_import_path, data_roots
from dgr_core.workspace import Workspace
from dgr_ui import audit_view as AV
from dgr_ui.charts import label_bar, length_histogram
from dgr_ui.common import current_backend, current_model, show_error, workspace
from dgr_ui.demo_panel import demo_panel
from dgr_ui.jobs import job_panel, launch, tracked
from dgr_ui.render_view import what_the_model_sees
from dgr_ui.score_settings import score_settings

SELECTED = "ds_selected"
FLASH = "ds_flash"
MAX_PICK = 2000  # samples offered in the per-sample picker (the table shows every match)
LENGTH_LABELS = {c: c.removesuffix("_tokens") for c in S.LENGTH_COLUMNS}
REASONING_CHOICES = {"any": None, "with reasoning": True, "without reasoning": False}


# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner="Loading the target model's tokenizer…", max_entries=4)
def _tokenizer(ref: str, revision: str | None, trust: bool, backend: str, root: str) -> S.TokenizerRef:
    from dgr_core.models.loading import ModelSpec

    return S.load_tokenizer(ModelSpec(ref, revision=revision, trust_remote_code=trust), backend,
                            Workspace(Path(root)))


@st.cache_data(show_spinner=False, max_entries=4)
def _load(root: str, name: str, fingerprint: str) -> pd.DataFrame:  # fingerprint: a replaced dataset reloads
    return DatasetStore(Workspace(Path(root))).load(name)


# ---------------------------------------------------------------- import


def mapping_override() -> ColumnMapping | None:
    """The user's column mapping, or None to detect the shape (or use the preset's mapping)."""
    with st.popover("Column mapping (optional: override the detected shape)"):
        if not st.checkbox("Override the detected mapping", key="ds_map_override"):
            return None
        st.caption("Name the original columns. A `response` column is split into reasoning + answer at the think "
                   "markers; give `reasoning` / `answer` columns instead when they are separate; `messages` is a "
                   "chat list column, `text` a chat-templated string.")
        cols = st.columns(3)
        values = {f: cols[i % 3].text_input(f, key=f"ds_map_{f}").strip() or None
                  for i, f in enumerate(MAPPED_FIELDS)}
    return ColumnMapping(shape="custom", **values)


def show_bad_rows(info: DatasetInfo) -> None:
    """The rows a keep-the-good-rows import left out, with their problem (never silent)."""
    n_bad = info.extra.get("n_bad_rows", 0)
    if n_bad:
        st.warning(f"{n_bad} bad rows were left out (the first {len(info.extra['bad_rows'])} are listed below and "
                   "in the dataset's meta.json).")
        st.dataframe(pd.DataFrame(info.extra["bad_rows"]), hide_index=True, height=200)


def run_import(store: DatasetStore, default_name: str, do: Callable[[str, ColumnMapping | None], DatasetInfo],
               mapping: ColumnMapping | None) -> None:
    """Import under the chosen (sanitized) name; refuses to replace an existing dataset unless asked."""
    try:
        name = safe_name(st.session_state.get("ds_name", "").strip() or default_name, what="dataset name")
        if store.exists(name) and not st.session_state.get("ds_replace"):
            raise DataError(f"a dataset named '{name}' already exists: tick 'Replace' or choose another name")
        with st.spinner(f"Importing {name}…"):
            info = do(name, mapping)
    except DGRError as exc:
        show_error(exc, "Import failed (existing datasets are unchanged)")
        return
    st.success(f"Imported **{info.name}**: {info.n_rows} rows, shape `{info.mapping.get('shape', '?')}`, "
               f"think status {info.think_counts}.")
    show_bad_rows(info)
    st.session_state[SELECTED] = info.name


def keep_good() -> bool:
    return bool(st.session_state.get("ds_keep_good"))


def upload_tab(store: DatasetStore, mapping: ColumnMapping | None) -> None:
    up = st.file_uploader(f"File ({', '.join(SUPPORTED_EXTENSIONS)}; at most {MAX_UPLOAD_BYTES // 2**20} MiB)",
                          type=sorted({e.rsplit(".", 1)[-1] for e in SUPPORTED_EXTENSIONS}), key="ds_upload")
    if st.button("Import upload", key="ds_import_upload", disabled=up is None) and up is not None:
        def do(name: str, m: ColumnMapping | None) -> DatasetInfo:
            path = load_upload(up.name, up, store.ws.uploads)  # copied in blocks: no second copy in memory
            return store.import_file(path, name, m, keep_good=keep_good())

        run_import(store, Path(up.name).stem, do, mapping)


def path_tab(store: DatasetStore, mapping: ColumnMapping | None) -> None:
    path = st.text_input("Path on this machine", key="ds_path", placeholder="/data/STAR-1.json").strip()
    roots = data_roots(store.ws)
    st.caption("Files inside the data roots only: " + ", ".join(f"`{r}`" for r in roots) + f" (set {ROOTS_ENV} to "
               "change them; `dgr datasets import PATH` on the command line reads any file you can).")
    if st.button("Import from path", key="ds_import_path", disabled=not path):
        def do(name: str, m: ColumnMapping | None) -> DatasetInfo:
            return store.import_file(check_import_path(Path(path), roots), name, m, keep_good=keep_good())

        run_import(store, Path(path).name.split(".")[0] or "dataset", do, mapping)


def hub_tab(store: DatasetStore, mapping: ColumnMapping | None) -> None:
    cols = st.columns([3, 1, 1])
    hf_id = cols[0].text_input("Hugging Face dataset id", key="ds_hf_id", placeholder="owner/name").strip()
    split = cols[1].text_input("Split", key="ds_hf_split", placeholder="train").strip() or None
    config = cols[2].text_input("Config", key="ds_hf_config").strip() or None
    st.caption("Needs the network or a local Hugging Face cache; never runs remote code.")
    if st.button("Import from the Hub", key="ds_import_hf", disabled=not hf_id):
        default = hf_id.rsplit("/", 1)[-1] + (f"-{split}" if split else "")
        run_import(store, default, lambda name, m: store.import_hf(hf_id, name=name, split=split, config=config,
                                                                   mapping=m), mapping)


def preset_tab(store: DatasetStore, mapping: ColumnMapping | None) -> None:
    hf_id = st.selectbox("Preset", list(PRESETS), key="ds_preset")
    preset = PRESETS[hf_id]
    split = st.selectbox("Split", preset.splits, index=preset.splits.index(preset.default_split),
                         key=f"ds_preset_split_{hf_id}")
    st.caption(f"{preset.description}  \n*{preset.paper}*")
    local = preset.local_path(split)
    st.caption(f"Local copy: `{local}` (no network needed)" if local else "No local copy: fetched from the Hub.")
    if st.button("Import preset", key="ds_import_preset"):
        default = hf_id.rsplit("/", 1)[-1] + f"-{split}"
        run_import(store, default, lambda name, m: store.import_hf(hf_id, name=name, split=split, mapping=m),
                   mapping)


def demo_tab(ws: Workspace) -> None:
    for name, _build, _origin, description in DEMOS:
        st.markdown(f"- **{name}**: {description}")
    if st.button("Add the demo datasets", key="ds_add_demo"):
        try:
            infos = ensure_demo_datasets(ws)
        except DGRError as exc:
            show_error(exc, "Demo datasets")
            return
        st.success(f"Ready: {', '.join(i.name for i in infos)}.")


def import_section(store: DatasetStore, expanded: bool) -> None:
    with st.expander("Import a dataset", expanded=expanded, icon=":material/upload:"):
        cols = st.columns([3, 1], vertical_alignment="bottom")
        cols[0].text_input("Dataset name (optional)", key="ds_name",
                           help="Default: the file name, or the Hub name and split. Sanitized to letters, digits, "
                                ". _ -")
        cols[1].checkbox("Replace a dataset of that name", key="ds_replace")
        st.checkbox("Keep the good rows and list the bad ones (off: any bad row rejects the file, naming each)",
                    key="ds_keep_good")
        mapping = mapping_override()
        tabs = st.tabs(["Upload", "Path", "Hugging Face", "Presets", "Demo data"])
        with tabs[0]:
            upload_tab(store, mapping)
        with tabs[1]:
            path_tab(store, mapping)
        with tabs[2]:
            hub_tab(store, mapping)
        with tabs[3]:
            preset_tab(store, mapping)
        with tabs[4]:
            demo_tab(store.ws)


# ---------------------------------------------------------------- browse


def tokenizer_allowed(ref: str, backend: str) -> bool:
    """The embedded demo (and the fake backend) load at once; any other model's tokenizer only after a click, so
    typing a path into the sidebar never loads files from it as the page draws."""
    approved = st.session_state.setdefault("ds_tokenizers_ok", set())
    if backend == "fake" or ref in DEMO_ALIASES or ref in approved:
        return True
    st.info(f"Token lengths need the tokenizer of `{ref}`.")
    if st.button("Load this tokenizer", key="ds_load_tokenizer"):
        approved.add(ref)
        return True
    return False


def lengths_for(ws: Workspace, info: DatasetInfo, df: pd.DataFrame) -> pd.DataFrame | None:
    """Token lengths under the sidebar's target model (cached on disk); None with a warning if unavailable."""
    spec, backend = current_model(), current_backend()
    if not tokenizer_allowed(spec.ref, backend):
        return None
    try:
        tok = _tokenizer(spec.ref, spec.revision, spec.trust_remote_code, backend, str(ws.root))
        with st.spinner(f"Counting tokens of {info.name}…"):
            lengths = S.cached_token_lengths(ws, df, info.fingerprint, tok, dataset=info.name)
    except DGRError as exc:
        st.warning(f"Token lengths unavailable: {exc}  \nLength filters and histograms need the target model's "
                   "tokenizer (sidebar).")
        return None
    st.caption(f"Lengths in tokens of `{tok.name}` (tokenizer `{tok.hash}`), each field alone, without the chat "
               "template.")
    return lengths


def length_filter(table: pd.DataFrame, fp: str) -> tuple[str, int | None, int | None]:
    cols = st.columns([1, 3])
    column = cols[0].selectbox("Length of", S.LENGTH_COLUMNS, index=S.LENGTH_COLUMNS.index("response_tokens"),
                               format_func=LENGTH_LABELS.get, key="ds_length_col",
                               help="response = reasoning + answer: what SFT trains on")
    top = max(1, int(table[column].max()) if len(table) else 1)
    lo, hi = cols[1].slider("Length range (target-model tokens)", 0, top, (0, top), key=f"ds_range_{fp}_{column}")
    return column, (lo if lo > 0 else None), (hi if hi < top else None)


def browse_controls(table: pd.DataFrame, fp: str, has_lengths: bool) -> S.BrowseQuery:
    cols = st.columns([3, 1, 1, 3], vertical_alignment="bottom")
    text = cols[0].text_input("Search", key="ds_search", placeholder="words, or a regular expression")
    regex = cols[1].checkbox("Regex", key="ds_regex")
    case = cols[2].checkbox("Match case", key="ds_case")
    fields = cols[3].multiselect("Search in", S.SEARCH_FIELDS, default=list(S.SEARCH_FIELDS), key="ds_fields")
    cols = st.columns(4)
    sources = cols[0].multiselect("Source", S.label_options(table["source"]), key=f"ds_sources_{fp}")
    categories = cols[1].multiselect("Category", S.label_options(table["category"]), key=f"ds_categories_{fp}")
    reasoning = cols[2].selectbox("Reasoning", list(REASONING_CHOICES), key="ds_has_reasoning")
    statuses = cols[3].multiselect("Think status", list(S.THINK_STATUS_HELP), key="ds_think")
    column, lo, hi = length_filter(table, fp) if has_lengths else ("response_tokens", None, None)
    cols = st.columns([3, 1], vertical_alignment="bottom")
    order = ["", "id", "source", "category", "think_status", *(S.LENGTH_COLUMNS if has_lengths else [])]
    sort_by = cols[0].selectbox("Sort by", order, format_func=lambda c: c or "dataset order", key="ds_sort")
    descending = cols[1].checkbox("Descending", key="ds_desc")
    return S.BrowseQuery(text=text, regex=regex, case_sensitive=case, fields=fields, sources=sources,
                         categories=categories, length_column=column, min_tokens=lo, max_tokens=hi,
                         has_reasoning=REASONING_CHOICES[reasoning], think_statuses=statuses, sort_by=sort_by,
                         descending=descending)


def sample_view(row: pd.Series) -> None:
    """One sample: prompt, reasoning and answer apart, with the think status and the original columns."""
    status = str(row.get("think_status", ""))
    color = "green" if status == "closed" else "orange"
    st.markdown(f"**{row['id']}** · source `{row['source'] or '–'}` · category `{row['category'] or '–'}` · "
                f":{color}-badge[think: {status or '?'}]")
    st.caption(S.THINK_STATUS_HELP.get(status, "no think status recorded"))
    AV.sample_badges(row)
    for segment in S.SEGMENTS:
        n = row.get(f"{segment}_tokens")
        st.markdown(f"**{segment.capitalize()}**" + (f" · {int(n)} tokens" if n is not None else ""))
        text = str(row[segment] or "")
        if text:
            st.code(text, language="text", wrap_lines=True)
        else:
            st.caption(f"(no {segment})")
    shown = {"id", "prompt", "reasoning", "answer", "source", "category", "think_status", *S.LENGTH_COLUMNS,
             *AV.tag_columns(row.to_frame().T), "audit_status"}
    with st.expander("Original columns"):
        st.json({k: (None if v is None else str(v)) for k, v in row.items() if k not in shown})


def browse_section(table: pd.DataFrame, fp: str, has_lengths: bool) -> pd.DataFrame:
    """Controls, the matching rows and the per-sample view; returns the matching rows (for the stats)."""
    query = browse_controls(table, fp, has_lengths)
    try:
        view = S.browse(table, query)
    except DGRError as exc:
        show_error(exc, "Search")
        view = table
    view = AV.pattern_filter(view, fp)
    st.caption(f"{len(view)} of {len(table)} rows")
    shown = [c for c in ["id", *S.LENGTH_COLUMNS, "think_status", "source", "category", *AV.tag_columns(view),
                         "prompt"] if c in view]
    st.dataframe(view[shown], hide_index=True, width="stretch", height=300,
                 column_config={**{c: st.column_config.NumberColumn(f"{label} tok", width="small")
                                   for c, label in LENGTH_LABELS.items()}, **AV.column_config(view)})
    if view.empty:
        st.info("No rows match.")
        return view
    ids = view["id"].astype(str).tolist()[:MAX_PICK]
    previews = dict(zip(ids, view["prompt"].astype(str).str.slice(0, 80).tolist(), strict=False))
    picked = st.selectbox(f"Sample ({min(len(view), MAX_PICK)} of the matches, in this order)", ids,
                          format_func=lambda i: f"{i} · {previews.get(i, '')}", key=f"ds_sample_{fp}")
    sample_view(view.iloc[ids.index(picked)])
    what_the_model_sees([("sample", view.iloc[ids.index(picked)].to_dict())], key="ds_sees")
    return view


# ---------------------------------------------------------------- stats, score, delete


def stats_section(table: pd.DataFrame, view: pd.DataFrame, has_lengths: bool) -> None:
    data = view if st.toggle("Only the rows the browser shows", key="ds_stats_filtered") else table
    st.caption(f"{len(data)} rows")
    if "think_status" in data:
        st.dataframe(S.label_counts(data["think_status"]).rename(columns={"label": "think status"}),
                     hide_index=True)
    if has_lengths and len(data):
        st.dataframe(S.length_summary(data), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.1f")
                                    for c in ("mean", "median", "p90")})
        st.plotly_chart(length_histogram(S.lengths_long(data)), key="ds_hist")
    cols = st.columns(2)
    cols[0].plotly_chart(label_bar(S.label_counts(data["category"]), "Categories"), key="ds_categories_bar")
    cols[1].plotly_chart(label_bar(S.label_counts(data["source"]), "Sources"), key="ds_sources_bar")


def score_section(ws: Workspace, name: str) -> None:
    spec, backend = current_model(), current_backend()
    st.caption(f"Per-token log-probs, NLL of reasoning and answer, and embeddings of **{name}** under `{spec.ref}` "
               f"(backend `{backend}`; change both in the sidebar). Runs as a job; samples already in the score "
               "cache are reused. The Shift and Compare pages read the results.")
    cfg = score_settings("ds_score")
    key = f"datasets-score-{name}"
    if st.button("Score with target model", key="ds_score", type="primary"):
        launch(ws, "score", ScoreJobConfig(name, cfg).to_dict(), name=f"score {name}", key=key)
    job_panel(tracked(key), key)


def _delete(root: str, name: str) -> None:
    """Button callback: runs before the rerun, so the list and the selection are fresh afterwards."""
    try:
        DatasetStore(Workspace(Path(root))).delete(name)
        st.session_state[FLASH] = f"Deleted **{name}**."
    except (DGRError, OSError) as exc:
        st.session_state[FLASH] = exc
    st.session_state.pop(SELECTED, None)


def delete_section(ws: Workspace, name: str) -> None:
    confirm = st.checkbox(f"Yes, delete **{name}** (score caches and runs that used it stay)",
                          key=f"ds_delete_confirm_{name}")
    st.button("Delete dataset", key="ds_delete", disabled=not confirm, on_click=_delete,
              args=(str(ws.root), name))


# ---------------------------------------------------------------- page


def show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if isinstance(flash, BaseException):
        show_error(flash, "Delete failed")
    elif flash:
        st.success(flash)


def pick_dataset(infos: list[DatasetInfo]) -> DatasetInfo | None:
    st.subheader("Datasets in the workspace")
    if not infos:
        st.info("No datasets yet: import one above, or add the demo datasets (Import a dataset → Demo data).")
        return None
    st.dataframe(S.datasets_table(infos), hide_index=True, width="stretch")
    names = [i.name for i in infos]
    if st.session_state.get(SELECTED) not in names:
        st.session_state.pop(SELECTED, None)
    name = st.selectbox("Dataset", names, key=SELECTED)
    return infos[names.index(name)]


def dataset_details(info: DatasetInfo) -> None:
    with st.expander("Details"):
        st.markdown(f"Origin `{info.origin}` · created {info.created_at} · fingerprint `{info.fingerprint}`"
                    + (f" · derived from `{info.parent}`" if info.parent else ""))
        if info.description:
            st.caption(info.description)
        st.json({"mapping": info.mapping, **({"extra": info.extra} if info.extra else {})})


def main() -> None:
    st.title("Datasets")
    ws = workspace()
    store = DatasetStore(ws)
    st.caption("Import safety SFT data, browse it with reasoning and answer apart, see its lengths in the target "
               "model's tokens, and score it with the target model.")
    show_flash()
    import_section(store, expanded=not store.list())
    with st.expander("DGR in miniature: the whole method on the demo data, in one click", icon=":material/bolt:"):
        demo_panel(ws)
    info = pick_dataset(store.list())
    if info is None:
        return
    dataset_details(info)
    try:
        df = _load(str(ws.root), info.name, info.fingerprint)
    except DGRError as exc:
        show_error(exc, info.name)
        return
    lengths = lengths_for(ws, info, df)
    table = AV.with_tags(ws, info, S.with_lengths(df, lengths))
    tabs = st.tabs(["Browse", "Stats", "Score", "Audit", "Delete"])
    with tabs[0]:
        view = browse_section(table, info.fingerprint, lengths is not None)
    with tabs[1]:
        stats_section(table, view, lengths is not None)
    with tabs[2]:
        score_section(ws, info.name)
    with tabs[3]:
        AV.audit_tab(ws, info)
    with tabs[4]:
        delete_section(ws, info.name)


main()
