"""Segment labels and the renderer used by scoring: a thin re-export of `dgr_core.render`, the one renderer that
scoring, SFT, refinement and evaluation share (see its docstring for how a row becomes token ids).

Kept so that `from dgr_core.scoring.segments import render, PROMPT, ...` keeps working; `token_pieces` (decoding
ids into the text of each token for the token viewer) lives here.
"""

from __future__ import annotations

import numpy as np

from dgr_core.render import (  # noqa: F401  (re-exported)
    ANSWER,
    CLOSE,
    END,
    MARKERS,
    OPEN,
    PLACEHOLDER,
    PROMPT,
    REASONING,
    SEGMENT_NAMES,
    Encoded,
    RenderConfig,
    TemplateFacts,
    render,
    template_facts,
)


def token_pieces(tokenizer, ids: np.ndarray | list[int]) -> list[str]:
    """Decoded text of each token (multi-byte characters split over tokens decode to their bytes' replacement
    only at the end of the character, so the concatenation equals the decoded text)."""
    out, prev = [], ""
    ids = [int(i) for i in ids]
    for n in range(1, len(ids) + 1):
        cur = tokenizer.decode(ids[:n], skip_special_tokens=False)
        if cur.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the rest of the character
            out.append("")
            continue
        out.append(cur[len(prev):])
        prev = cur
    return out
