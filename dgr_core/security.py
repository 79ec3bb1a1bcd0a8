"""Shared-server safety: which files the app may import, whether remote code may run, the optional access token.

The app listens on 127.0.0.1, which keeps other machines out but not other users of the same machine. On a shared
GPU server these rules apply to what the *app* does for whoever reaches its port (the CLI, run by the user
themself, is not limited):

- path imports are limited to the data roots: `DGR_DATA_ROOTS` (folders separated by ':'), by default the
  workspace, the repo's `data/` and `../shared/data`. The path is resolved (symlinks followed) and must land inside
  a root on a regular file: no symlink out of the roots, no device, FIFO or socket;
- a model's own Python code (`trust_remote_code`) runs only when `DGR_ALLOW_REMOTE_CODE=1`;
- with `DGR_ACCESS_TOKEN` set, every browser session must enter that token once (compared in constant time).

    root = check_import_path(Path("/data/STAR-1.json"))      # DataError unless it lies in a data root
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from pathlib import Path

from dgr_core.errors import DataError
from dgr_core.workspace import REPO_ROOT, Workspace

TRUE_VALUES = {"1", "true", "yes", "on"}
ROOTS_ENV, REMOTE_CODE_ENV, TOKEN_ENV = "DGR_DATA_ROOTS", "DGR_ALLOW_REMOTE_CODE", "DGR_ACCESS_TOKEN"


def data_roots(ws: Workspace | None = None) -> list[Path]:
    """The folders the app may import files from (resolved; ones that do not exist are left out)."""
    env = os.environ.get(ROOTS_ENV, "").strip()
    if env:
        candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    else:
        ws = ws or Workspace.default()
        candidates = [Path(ws.root), REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"]
    return [p.resolve() for p in candidates if p.is_dir()]


def check_import_path(path: Path, roots: list[Path] | None = None) -> Path:
    """The resolved path if it is a regular file inside one of `roots` (default `data_roots()`); DataError
    otherwise. The message names the path and the roots, never anything read from the file."""
    roots = data_roots() if roots is None else roots
    given = Path(path).expanduser()
    try:
        resolved = given.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise DataError("file not found", file=str(given)) from None
    if not any(resolved.is_relative_to(root) for root in roots):
        where = ", ".join(str(r) for r in roots) or "(none configured)"
        raise DataError(f"the app imports files only from its data roots ({where}); set {ROOTS_ENV} to allow "
                        "another folder, or use `dgr datasets import` on the command line", file=str(given))
    try:
        mode = resolved.stat().st_mode
    except OSError:
        raise DataError("cannot read the file", file=str(given)) from None
    if not stat.S_ISREG(mode):
        raise DataError("not a regular file (a folder, device, FIFO or socket)", file=str(given))
    return resolved


def remote_code_allowed() -> bool:
    """True when the server's owner allowed models' own code to run (`DGR_ALLOW_REMOTE_CODE=1`)."""
    return os.environ.get(REMOTE_CODE_ENV, "").strip().lower() in TRUE_VALUES


def access_token() -> str:
    """The token every app session must give, or "" when none is configured."""
    return os.environ.get(TOKEN_ENV, "")


def token_matches(given: str, expected: str | None = None) -> bool:
    """Constant-time comparison of a typed token with the configured one (False when none is configured)."""
    expected = access_token() if expected is None else expected
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; False for 0.0.0.0, a LAN address or a host name."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False
