"""Load a target model: the embedded demo, a local folder or a Hugging Face id, on the best device and dtype.

`ModelSpec` is what a user picks (and what a job spec stores); `load_model` returns a `LoadedModel` with the
model in eval mode, a tokenizer with a pad token, the device and dtype actually used, and an identity dict that
goes into every cache key (path or id, revision or weights hash, tokenizer + chat-template hash).

A finished train run is a model too: `ModelSpec("run:<run folder name>")` loads the model the run saved (a full
fine-tune's folder, or the base model with the run's LoRA adapter merged in memory); its identity is the base
model's identity (recorded by the run) + the run id + a hash of the saved weights.

Security: `trust_remote_code` is off unless the spec asks for it. Offline, an unknown id fails at once with a
`ModelLoadError` that says the model was not found locally and the hub could not be reached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dgr_core.config import Config
from dgr_core.errors import ModelLoadError
from dgr_core.workspace import Workspace, atomic_write_bytes

if TYPE_CHECKING:
    from dgr_core.jobs.results import TrainResult

log = logging.getLogger(__name__)

DEMO_MODEL = "demo"  # the embedded SmolLM2-135M-Instruct
DEMO_ALIASES = {DEMO_MODEL, "embedded", "smollm2-135m-instruct", "embedded:smollm2-135m-instruct"}
DTYPES = ("auto", "float32", "bfloat16", "float16")
RUN_PREFIX = "run:"  # ModelSpec("run:<run id>"): the model a finished train run saved


@dataclass(frozen=True)
class ModelSpec(Config):
    """Which model to load and how."""

    section: ClassVar[str] = "model"

    ref: str = DEMO_MODEL  # "demo", a local folder, or a Hugging Face id
    revision: str | None = None  # hub revision (branch, tag or commit); ignored for local folders
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    dtype: str = "auto"  # "auto" picks bfloat16 where supported, else float32
    trust_remote_code: bool = False  # never on unless the user asks


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    spec: ModelSpec
    path: str
    device: str
    dtype: str
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.identity.get('name', self.spec.ref)} · {self.device} · {self.dtype}"


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16, e.g. AMD Zen 4+, Intel Sapphire Rapids+).

    There bf16 matmuls run about 2x fp32's (measured: benchmarks/RESULTS.md, Scoring); on AVX2-only CPUs they are
    emulated and slower than fp32. DGR_CPU_BF16=0 / =1 overrides the detection (0: keep CPU "auto" at fp32)."""
    forced = os.environ.get("DGR_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def pick_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """Resolve "auto": CUDA if present, else CPU; bfloat16 where the device multiplies it natively (a GPU with bf16,
    a CPU with AVX512-BF16 / AMX), else float32. Training resolves its own dtype (fp32 master weights on CPU)."""
    import torch

    if dtype not in DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} requested but CUDA is not available on this machine.")
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        else:
            dtype = "bfloat16" if device == "cpu" and cpu_has_native_bf16() else "float32"
    return device, dtype


def resolve_model_path(ref: str, ws: Workspace | None = None, revision: str | None = None) -> str:
    """Local folder for the demo or a path; the id itself for a hub model (checked to exist)."""
    ws = ws or Workspace.default()
    if ref.startswith(RUN_PREFIX):
        return str(_run_weights_dir(ref, ws))
    if ref in DEMO_ALIASES:
        from dgr_core.models.embedded import ensure_converted

        return str(ensure_converted(ws))
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but has no config.json: not a Hugging Face model folder.")
        return str(path.resolve())
    if ref.startswith((".", "/", "~")):
        raise ModelLoadError(f"Model folder {ref!r} does not exist.")
    _check_hub_id(ref, revision)
    return ref


def _run_result(ref: str, ws: Workspace) -> tuple[Path, TrainResult]:
    """(run folder, typed result) of the train run named by a `run:<id>` ref."""
    from dgr_core.jobs.results import ResultError, TrainResult, read_result

    run_id = ref[len(RUN_PREFIX):].strip()
    run_dir = ws.runs / run_id
    if not run_id or "/" in run_id or "\\" in run_id or ".." in run_id or run_id.startswith(".") \
            or not run_dir.is_dir():
        raise ModelLoadError(f"Model {ref!r}: there is no run {run_id!r} in {ws.runs}.")
    try:
        result = read_result(run_dir, TrainResult)
    except ResultError as exc:
        raise ModelLoadError(f"Model {ref!r}: {exc}") from exc
    if result is None:
        raise ModelLoadError(f"Model {ref!r}: run {run_id} has no result.json (it has not finished).")
    return run_dir, result


def _run_weights_dir(ref: str, ws: Workspace) -> Path:
    """The folder a train run saved: `adapter/` (LoRA) or `model/` (full fine-tune)."""
    run_dir, result = _run_result(ref, ws)
    folder = run_dir / ("adapter" if result.method == "lora" else "model")
    if not folder.is_dir():
        raise ModelLoadError(f"Model {ref!r}: {folder} is missing.")
    return folder


def _env_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _check_hub_id(ref: str, revision: str | None) -> None:
    """A hub id is 'name' or 'owner/name' of [A-Za-z0-9._-], never '.' or '..' as a part (a path in disguise)."""
    parts = ref.split("/")
    if (not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", ref) or any(part in (".", "..") for part in parts)
            or ".." in ref):
        raise ModelLoadError(f"Model {ref!r} is neither an existing local folder nor a Hugging Face id "
                             "('owner/name', letters, digits, '.', '_', '-').")
    # Offline is passed per call (local_files_only), never by flipping huggingface_hub's process-wide flag:
    # concurrent sessions of the app would race on it.
    import huggingface_hub.constants as hub

    _fetch_config(ref, revision, offline=bool(hub.HF_HUB_OFFLINE) or _env_offline())


def _fetch_config(ref: str, revision: str | None, *, offline: bool) -> None:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(ref, revision=revision, trust_remote_code=False, local_files_only=offline)
    except ValueError as exc:  # e.g. a config that needs remote code
        if "trust_remote_code" in str(exc):
            return
        raise ModelLoadError(f"Model {ref!r}: {exc}") from exc
    except OSError as exc:
        why = "offline mode (HF_HUB_OFFLINE=1) is on" if offline else "the hub could not be reached or has no such id"
        raise ModelLoadError(
            f"Model {ref!r} was not found as a local folder nor in the local Hugging Face cache, and {why}. "
            "Give a local folder, or connect and retry with a valid Hugging Face id."
        ) from exc


def brief(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line for a user-facing message: its type and the start of its text (a broken
    file's error can quote much of the file)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[:limit] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_LOADED: dict[tuple, LoadedModel] = {}


def load_model(spec: ModelSpec, ws: Workspace | None = None) -> LoadedModel:
    """Load (or reuse from this process) the model and tokenizer of `spec`."""
    device, dtype = pick_device_dtype(spec.device, spec.dtype)
    key = (spec.ref, spec.revision, device, dtype, spec.trust_remote_code)
    if key in _LOADED:
        return _LOADED[key]
    loaded = load_uncached(spec, ws)
    _LOADED.clear()  # keep one model resident: they are large
    _LOADED[key] = loaded
    log.info("Loaded %s", loaded.label)
    return loaded


def load_uncached(spec: ModelSpec, ws: Workspace | None = None) -> LoadedModel:
    """A fresh copy of the model, not shared with `load_model`'s cache: for code that changes the weights
    (training), so that later `load_model` calls in the same process never see the changed model."""
    ws = ws or Workspace.default()
    device, dtype = pick_device_dtype(spec.device, spec.dtype)
    path = resolve_model_path(spec.ref, ws, spec.revision)
    if spec.ref.startswith(RUN_PREFIX) and (Path(path) / "adapter_config.json").is_file():
        model, tokenizer = _load_merged_adapter(path, spec, device, dtype, ws)
    else:
        model, tokenizer = _load_pretrained(path, spec, device, dtype)
    loaded = LoadedModel(model, tokenizer, spec, path, device, dtype)
    loaded.identity = model_identity(loaded, ws)
    return loaded


def clear_model_cache() -> None:
    """Drop the model `load_model` keeps resident (e.g. before loading a second copy to train)."""
    _LOADED.clear()


def _load_merged_adapter(path: str, spec: ModelSpec, device: str, dtype: str, ws: Workspace) -> tuple[Any, Any]:
    """Base model of a LoRA run + its adapter, merged in memory (the base may itself be a run)."""
    from peft import PeftModel

    _, result = _run_result(spec.ref, ws)
    base = result.base_model
    # Device and dtype are the caller's; remote code runs only if *this* spec allows it.
    base = ModelSpec(base.ref, base.revision, device, dtype, spec.trust_remote_code)
    base_loaded = load_uncached(base, ws)
    try:
        merged = PeftModel.from_pretrained(base_loaded.model, path).merge_and_unload()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not apply the LoRA adapter of {spec.ref!r} ({path}): {exc}") from exc
    return merged.to(device).eval(), _adapter_tokenizer(path, spec, base_loaded.tokenizer)


def _adapter_tokenizer(path: str, spec: ModelSpec, fallback: Any) -> Any:
    """The tokenizer saved beside an adapter (a train run saves it there), else the base model's."""
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer_config.json").is_file():
        return fallback
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except Exception as exc:  # a broken tokenizer file raises anything (KeyError, …)
        raise ModelLoadError(f"Could not load the tokenizer of {spec.ref!r} from {path}: {brief(exc)}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_pretrained(path: str, spec: ModelSpec, device: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
    except Exception as exc:  # a broken folder raises anything (KeyError from a bad tokenizer.json, …)
        raise ModelLoadError(f"Could not load model {spec.ref!r} from {path}: {brief(exc)}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device)  # type: ignore[arg-type]  # transformers' stub types `to`'s first argument oddly
    return model.eval(), tokenizer


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 over the tokenizer's vocabulary/merges and its chat template."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode())
    digest.update((tokenizer.chat_template or "").encode())
    return digest.hexdigest()[:16]


def model_identity(loaded: LoadedModel, ws: Workspace | None = None) -> dict[str, Any]:
    """`cache_identity` of a loaded model plus what a person reads (architecture, parameter count)."""
    config = loaded.model.config
    return {
        "name": Path(loaded.path).name if Path(loaded.path).is_dir() else loaded.path,
        "architecture": (getattr(config, "architectures", None) or [type(loaded.model).__name__])[0],
        "n_params": int(sum(p.numel() for p in loaded.model.parameters())),
        **cache_identity(loaded.spec, loaded.path, loaded.tokenizer, ws),
    }


def cache_identity(spec: ModelSpec, path: str, tokenizer: Any, ws: Workspace | None = None) -> dict[str, Any]:
    """What identifies the weights and tokenizer in every cache key: hub id + commit, or a hash of local weights;
    for a `run:<id>` model also the run and the base model it was trained from. Needs no weights loaded, so the
    loaded backend (`model_identity`) and a page that only looks up scores (`backends.base.describe_model`) get
    the same identity from this one function."""
    ident: dict[str, Any] = {"ref": spec.ref, "tokenizer_hash": tokenizer_hash(tokenizer)}
    if Path(path).is_dir():
        ident["weights_hash"] = weights_hash(Path(path), ws)
    else:
        ident["revision"] = hub_commit(path, spec)
    if spec.ref.startswith(RUN_PREFIX):
        # The run's own weights (adapter or full model) are hashed above; add what they were trained from.
        run_dir, result = _run_result(spec.ref, ws or Workspace.default())
        ident.update(name=f"{RUN_PREFIX}{run_dir.name}", run=run_dir.name,
                     base=result.base_identity or result.base_model.to_dict())
    return ident


def hub_commit(ref: str, spec: ModelSpec) -> str:
    """The commit a hub id resolves to (from the local HF cache when offline), else the requested revision."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(ref, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError):
        config = None
    return getattr(config, "_commit_hash", None) or spec.revision or "main"


def weights_hash(folder: Path, ws: Workspace | None = None) -> str:
    """sha256 over the weight files of a local folder, memoized per (path, size, mtime, inode) in the workspace."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"))
    # Nanosecond mtime and inode: a file rewritten within the same second at the same size must re-hash.
    stamp = json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) for p in files])
    memo_dir = (ws or Workspace.default()).models / ".weights-hash"
    memo_dir.mkdir(exist_ok=True)
    memo = memo_dir / hashlib.sha256(f"{folder.resolve()}|{stamp}".encode()).hexdigest()[:24]
    if memo.is_file():
        cached = memo.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{16}", cached):  # a memo from an older, non-atomic write may be torn
            return cached
    from dgr_core.models.embedded import file_sha256

    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        digest.update(file_sha256(p).encode())
    value = digest.hexdigest()[:16]
    atomic_write_bytes(memo, value.encode())  # a kill mid-write must never leave a truncated hash behind
    return value
