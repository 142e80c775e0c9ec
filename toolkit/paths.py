"""Output locations checked before any work starts."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def check_writable_dir(path: Path, flag: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable; one-line UserError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder; choose another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); choose a writable folder") from exc
    return path


def cache_dir() -> Path:
    """Where generated data sets and decoded audio live: ``$TOOLKIT_CACHE``, else ``~/.cache/diffmsst-toolkit``."""
    return Path(os.environ.get("TOOLKIT_CACHE", Path.home() / ".cache" / "diffmsst-toolkit"))
