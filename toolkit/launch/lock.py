"""One submitting ``toolkit sweep`` per sweep folder: an flock on ``DIR/.submitter.lock``."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no guard
    fcntl = None


@contextmanager
def submitter_lock(out):
    """Hold ``DIR/.submitter.lock`` while launching: a second ``toolkit sweep`` on DIR stops with a UserError.

    An flock dies with its process (even SIGKILL), so a stale lock never blocks a re-run.
    """
    if fcntl is None:
        yield
        return
    path = Path(out) / ".submitter.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise UserError(f"{out}: another `toolkit sweep` (pid {pid}) is running this sweep; "
                            f"watch it with `toolkit sweep --status {out}`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def submitter_running(out) -> bool | None:
    """Whether a ``toolkit sweep`` process holds DIR's lock now (None where that cannot be told)."""
    if fcntl is None:
        return None
    path = Path(out) / ".submitter.lock"
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
