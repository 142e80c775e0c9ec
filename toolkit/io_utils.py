"""Atomic file writes: a reader never sees a half-written file.

Every writer goes to a temporary file in the destination's own directory
(so the final ``os.replace`` is a same-filesystem rename, atomic on POSIX
and Windows), is flushed to disk, and only then replaces the destination.
On any failure the temporary file is removed and the destination is left
as it was::

    with atomic_path(run_dir / "model.pt") as tmp:
        torch.save(state, tmp)

    atomic_write_text(run_dir / "scores.json", json.dumps(scores))

The temporary file keeps the destination's suffix, so libraries that infer
a format from the extension (soundfile, numpy) write the right thing, and
its name starts with a dot so folder listings skip it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserError

# Errors that mean "the disk or the folder refuses us", fixable by the user.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _user_error(path: Path, exc: OSError) -> UserError:
    if isinstance(exc, PermissionError):
        return UserError(f"{path}: permission denied writing here; choose a folder you can write to or fix its permissions")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"{path}: no space left on the device; free some disk space or write elsewhere")
    if exc.errno == errno.EROFS:
        return UserError(f"{path}: the file system is read-only; write to another folder")
    if isinstance(exc, FileNotFoundError):
        return UserError(f"{path}: the folder {path.parent} does not exist; create it first")
    if isinstance(exc, (NotADirectoryError, FileExistsError)) or exc.errno == errno.ENOTDIR:
        return UserError(f"{path}: a parent of this path is a file, not a folder; choose another output path")
    return UserError(f"{path}: cannot write ({exc.strerror or exc}); check the path and its folder")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every platform can open a folder."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, make_parents: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path``.

    The temporary file already exists (empty, mode 0666 minus the umask) so
    the name is reserved; writers may overwrite or truncate it. On an
    exception inside the block the temporary file is removed and the
    exception re-raised (disk-full errors become :class:`UserError`).
    Parent folders are created unless ``make_parents=False``.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file path to write to")
    parent = path.parent
    try:
        if make_parents:
            parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL with a random name rather than mkstemp: mkstemp forces mode
        # 0600, and the final file should get the usual umask permissions.
        while True:
            tmp = parent / f".{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                if not parent.is_dir():
                    raise
        os.close(fd)
    except OSError as exc:
        raise _user_error(path, exc) from exc

    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and (exc.errno in _DISK_ERRNOS or isinstance(exc, PermissionError)):
            raise _user_error(path, exc) from exc
        raise
    _fsync_dir(parent)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``\\n`` line endings kept as given); returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding, newline=""))


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it is renamed to ``path``.

    For outputs made of several files (a track's stems): a reader sees the whole
    folder or none of it. An existing ``path`` is replaced; on an exception the
    temporary folder is removed. Leftovers of a killed writer start with
    ``.<name>.tmp-`` and can be swept by the folder's one writer.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as exc:
        raise _user_error(path, exc) from exc
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (exc.errno in _DISK_ERRNOS or isinstance(exc, PermissionError)):
            raise _user_error(path, exc) from exc
        raise
    _fsync_dir(path.parent)


@contextmanager
def exclusive_lock(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if needed) for the block.

    Processes that build the same cached output take it in turn: the first
    builds, the others find the result when they get the lock.
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
