"""The "What the model sees" view (Datasets and Compare pages): one or two rows rendered for score, train,
generate or refine by `dgr_core.model_view` (the renderer the jobs use), with the exact text, each segment marked
and its token count. Nothing is loaded until the toggle is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from dgr_core.errors import DGRError
from dgr_core.model_view import PURPOSES, counts_line, marked_text, row_views
from dgr_core.render import RenderConfig
from dgr_ui.common import current_backend, current_model, show_error, workspace

HELP = ("The exact text the target model is given, segment by segment (prompt, think_open, reasoning, think_close, "
        "answer, end_of_turn), with the token count of each: the same renderer scores, trains, evaluates and "
        "prompts refinement, so this is what those jobs compute on.")


@st.cache_resource(show_spinner="Loading the target model's tokenizer…", max_entries=4)
def _tokenizer(ref: str, revision: str | None, trust: bool, backend: str, root: str) -> Any:
    from dgr_core.data.stats import load_tokenizer
    from dgr_core.models.loading import ModelSpec
    from dgr_core.workspace import Workspace

    spec = ModelSpec(ref, revision=revision, trust_remote_code=trust)
    return load_tokenizer(spec, backend, Workspace(Path(root))).tokenizer


def sidebar_tokenizer() -> Any:
    """The sidebar's target model's tokenizer (the weights are never loaded)."""
    spec = current_model()
    return _tokenizer(spec.ref, spec.revision, spec.trust_remote_code, current_backend(), str(workspace().root))


def show_views(row: dict, tokenizer: Any, purpose: str, cfg: RenderConfig, mode: str) -> None:
    for view in row_views(row, tokenizer, purpose, cfg, mode=mode):
        st.markdown(f"*{view.title}*")
        st.caption(counts_line(view) + "".join(f"  \n· {n}" for n in view.notes))
        st.code(marked_text(view), language="text", wrap_lines=True)


def what_the_model_sees(rows: list[tuple[str, dict]], key: str, tokenizer: Any = None,
                        cfg: RenderConfig | None = None) -> None:
    """A toggle; when on, each (label, row) rendered for the chosen purpose, side by side."""
    if not st.toggle("What the model sees", key=f"{key}_on", help=HELP):
        return
    c1, c2 = st.columns([3, 1])
    purpose = c1.radio("For", PURPOSES, horizontal=True, key=f"{key}_for")
    mode = c2.selectbox("Refine mode", ["joint", "separate", "self"], key=f"{key}_mode", disabled=purpose != "refine")
    try:
        tok = tokenizer if tokenizer is not None else sidebar_tokenizer()
        for col, (label, row) in zip(st.columns(len(rows)), rows, strict=True):
            with col:
                st.markdown(f"**{label}** · `{row.get('id', '')}`")
                show_views(row, tok, purpose, cfg or RenderConfig(), mode)
    except DGRError as exc:
        show_error(exc, "What the model sees")
    except Exception as exc:  # noqa: BLE001 - a chat template that fails to render must not stop the page
        show_error(DGRError(f"the chat template could not render this row: {exc}"), "What the model sees")
