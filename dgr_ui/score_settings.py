"""The scoring settings a page asks for (mode, max tokens, embedding layer), one set of widgets for every page.

    cfg = score_settings("shift")          # ScoreConfig of the sidebar's model and backend, keys shift_mode, …

Defaults and help come from `ScoreConfig`'s fields (dgr_core.config.default_of / help_of), so a page never restates
them; the Shift and Compare pages read scores with these settings (they are part of the score-cache key), the
Datasets page launches a score job with them.
"""

from __future__ import annotations

import typing

import streamlit as st

from dgr_core.config import default_of, help_of
from dgr_core.scoring.api import ScoreConfig
from dgr_ui.common import current_backend, current_model

MODES = list(typing.get_args(typing.get_type_hints(ScoreConfig)["mode"]))


def _help(name: str) -> str:
    return help_of(ScoreConfig, name).removeprefix("(key) ")


def score_settings(prefix: str, *, layer: bool = True) -> ScoreConfig:
    """Mode, max tokens and (with `layer`) the embedding layer as widgets keyed `<prefix>_mode`, …, and the
    ScoreConfig of the sidebar's model and backend with them."""
    cols = st.columns(3 if layer else 2)
    mode = cols[0].selectbox("Mode", MODES, index=MODES.index(default_of(ScoreConfig, "mode")), key=f"{prefix}_mode",
                             help=_help("mode"))
    max_length = cols[1].number_input("Max tokens", 64, 131072, default_of(ScoreConfig, "max_length"), step=256,
                                      key=f"{prefix}_max_length", help=_help("max_length"))
    chosen = int(cols[2].number_input("Embedding layer", -64, 128, default_of(ScoreConfig, "layer"),
                                      key=f"{prefix}_layer", help=_help("layer"))) if layer \
        else default_of(ScoreConfig, "layer")
    return ScoreConfig(model=current_model(), backend=current_backend(), mode=mode, max_length=int(max_length),
                       layer=chosen)
