"""Known safety SFT datasets from the safety-tax literature, with their column mappings and splits.

`PRESETS[hf_id]` gives a `Preset`: where the data lives, how its columns map onto canonical rows, which splits
exist, and the paper. `hub.load_hf` uses a preset's mapping when the caller gives none, and reads a split from
a local copy (`local_files`, relative to the shared data folder) instead of the network when one is present.

How each mapping was checked (none of these datasets was downloaded):
- UCSC-VLAA/STAR-1: the repo's data/STAR-1.json (id, question, response, category list, source, score).
- thu-coai/LRM-Safety-Study: the repo's dataset/data/sft_train_nocot.json (prompt, response, data_type); split
  names are the repo's file names sft_train_<split>.json (README "Data Splits"); whether the Hub exposes them as
  splits or configs was not verified.
- Yeonjun/R1-Act-train: the R1-Act training script reads `instruction` and `response`.
- TianshengHuang/DirectRefusal: the Hub card lists prompt, response, category (struct of flags), is_safe,
  refusal, text; the Safety-Tax build script writes `text` as a Qwen2.5 ChatML conversation whose assistant turn is
  `<|im_start|>think\\n I should not answer this question!<|im_start|>answer\\nAnswer: <refusal>`. `text` is what
  was trained on; `response` is the original BeaverTails answer and must not be read as the target.
- TianshengHuang/Small_SafeChain: the Safety-Tax build script (1,000 `vanilla_harmful` rows of UWNSL/SafeChain,
  `instruction`/`response` rendered into the same s1-style `text`); the card itself was not read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dgr_core.data.schema import ColumnMapping
from dgr_core.workspace import REPO_ROOT


def shared_data_dir() -> Path:
    """The shared real-data folder: DGR_SHARED_DATA if set, else `<repo>/../shared/data`."""
    env = os.environ.get("DGR_SHARED_DATA")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Preset:
    """One known dataset. `mapping` None means: detect the shape from the columns."""

    hf_id: str
    description: str
    mapping: ColumnMapping | None
    splits: list[str]
    default_split: str
    paper: str
    local_files: dict[str, str] = field(default_factory=dict)  # split -> path under shared_data_dir()

    def local_path(self, split: str) -> Path | None:
        """The local copy of `split`, if this machine has it."""
        rel = self.local_files.get(split)
        path = shared_data_dir() / rel if rel else None
        return path if path is not None and path.is_file() else None


_LRM_SPLITS = ["default", "realsafe", "improved", "short", "template", "nocot", "math"]

PRESETS: dict[str, Preset] = {
    p.hf_id: p
    for p in [
        Preset(
            hf_id="TianshengHuang/DirectRefusal",
            description="1,000 BeaverTails harmful prompts with a fixed one-line reasoning stub ('I should not "
                        "answer this question!') and a refusal answer, in s1 think/answer markers. Parsed from "
                        "the trained `text` column; `response` holds the original BeaverTails answer.",
            mapping=ColumnMapping(shape="text", text="text", category="category"),
            splits=["train"], default_split="train",
            paper="Huang et al. 2025, Safety Tax: Safety Alignment Makes Your Large Reasoning Models Less "
                  "Reasonable (arXiv 2503.00555)"),
        Preset(
            hf_id="UCSC-VLAA/STAR-1",
            description="1,000 harmful / borderline questions with DeepSeek-R1 policy-grounded <think> reasoning "
                        "and a safe answer; multi-label category, upstream source.",
            mapping=ColumnMapping(shape="star1", prompt="question", response="response", id="id",
                                  source="source", category="category"),
            splits=["train"], default_split="train",
            paper="Wang et al. 2025, STAR-1: Safer Alignment of Reasoning LLMs with 1K Data (arXiv 2504.01903)"),
        Preset(
            hf_id="Yeonjun/R1-Act-train",
            description="R1-ACT structured safety reasoning traces (harmfulness assessment, then answer) for "
                        "harmful instructions; `instruction` / `response` as read by the R1-Act training script.",
            mapping=ColumnMapping(shape="instruction_response", prompt="instruction", response="response"),
            splits=["train"], default_split="train",
            paper="In et al. 2025, R1-ACT: Efficient Reasoning Model Safety Alignment by Activating Safety "
                  "Knowledge (arXiv 2508.00324)"),
        Preset(
            hf_id="thu-coai/LRM-Safety-Study",
            description="Safety SFT variants (1,000 rows each: default, realsafe, improved, short, template CoT, "
                        "and nocot = empty <think> + fixed refusal) plus 4,000 math rows. The nocot split is read "
                        "from the shared local copy when present. Hub split names follow the repo's file names "
                        "(not verified on the Hub).",
            mapping=ColumnMapping(shape="prompt_response", prompt="prompt", response="response",
                                  category="data_type"),
            splits=_LRM_SPLITS, default_split="nocot",
            paper="Zhang et al. 2025, How Should We Enhance the Safety of Large Reasoning Models: An Empirical "
                  "Study (arXiv 2505.15404)",
            local_files={"nocot": "LRM-Safety-Study/dataset/data/sft_train_nocot.json"}),
        Preset(
            hf_id="TianshengHuang/Small_SafeChain",
            description="1,000 vanilla-harmful SafeChain rows (R1 reasoning + answer) rendered into s1 "
                        "think/answer markers in `text`, as built by the Safety-Tax scripts. Columns inferred "
                        "from the build script, not from the Hub card.",
            mapping=ColumnMapping(shape="text", text="text"),
            splits=["train"], default_split="train",
            paper="Huang et al. 2025, Safety Tax (arXiv 2503.00555); data from Jiang et al. 2025, SafeChain "
                  "(arXiv 2502.12025)"),
    ]
}
