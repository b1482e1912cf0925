"""Writing files safely: every output goes through a uniquely named temp file in its folder, fsync, `os.replace`.

A crash at any moment leaves the old file or the new one, never a truncated mix; the temp name is created
exclusively (`tempfile.mkstemp`, O_EXCL), so a file or link planted at a predictable name is never followed, and a
link at the target itself is replaced, not written through. A failed write (disk full, a folder in the way) is
one `WriteError` line, with the temp file removed and the target untouched.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

try:
    import fcntl                        # POSIX; elsewhere the run folder is not locked
except ImportError:                     # pragma: no cover
    fcntl = None

import numpy as np

from .errors import UserError

TEMP_SUFFIX = ".tmp"


class WriteError(UserError):
    """An output could not be written; nothing partial was left at its path."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()           # what open() would give: mkstemp's 0600 would hide a run from its group


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a fresh temp file beside `path`, fsync it, rename it over `path` and fsync the folder
    (the rename survives a power loss). On any error the temp file is removed, `path` is untouched, and an
    OSError becomes one WriteError line."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=TEMP_SUFFIX)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)            # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as err:
        what = "a folder is in the way" if os.path.isdir(path) else err.strerror or type(err).__name__
        raise WriteError(f"could not write {path} ({what}); nothing was written there") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def jsonable(obj):
    """NaN -> None and numpy scalars -> Python, so the file is strict JSON."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: str, obj) -> None:
    """`obj` as indented strict JSON (NaN written as null), atomically."""
    text = json.dumps(jsonable(obj), indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))


@contextmanager
def exclusive_lock(folder: str, *, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on <folder>/.lock) while the block runs; a second holder is refused
    with one line. The kernel drops the lock when its process dies, so a crash never leaves a stale lock."""
    if fcntl is None:
        yield
        return
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise UserError(f"{what} {folder} is in use by another process (pid {holder}); wait for it to "
                            "finish, or pick another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)                    # releases the lock


def writable_dir(folder: str, *, what: str) -> str:
    """Create `folder` if needed and prove it is writable with a uniquely named probe file (several torchrun
    ranks may probe the same folder at once). Failure is a UserError naming `what` it is."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as err:
        raise UserError(f"cannot write to {what} {folder} ({err.strerror or err}); pick another folder") from None
    return folder
