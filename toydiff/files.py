"""Writing files safely: every output goes through a uniquely named temp file in its folder, fsync, `os.replace`.

A crash at any moment leaves the old file or the new one, never a truncated mix; the temp name is created
exclusively (`tempfile.mkstemp`, O_EXCL), so a file or link planted at a predictable name is never followed, and a
link at the target itself is replaced, not written through. A failed write (disk full, a folder in the way) is
one `WriteError` line, with the temp file removed and the target untouched. The lock file is opened without
following links, and a folder that cannot be made leaves none of its parents behind.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
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


class _Sink:
    """The temp file as a writer sees it, remembering an OSError from `write`: a serialiser may turn it into its
    own error (torch's zip writer raises RuntimeError "unexpected pos ..." on a full disk), which then reads as
    the OS's reason."""

    def __init__(self, f: IO[bytes]):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a fresh temp file beside `path`, fsync it, rename it over `path` and fsync the folder
    (the rename survives a power loss). On any error the temp file is removed, `path` is untouched, and an
    OSError (also one a serialiser reported as its own error) becomes one WriteError line."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=TEMP_SUFFIX)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            sink = _Sink(f)
            try:
                write(sink)
            except Exception:
                if sink.error is None:
                    raise
                raise sink.error from None
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
    with one line. The kernel drops the lock when its process dies, so a crash never leaves a stale lock. The lock
    file is opened without following a link and must be a plain file of its own (no hard link): a planted one is
    refused, never written through."""
    if fcntl is None:
        yield
        return
    path = os.path.join(folder, ".lock")
    fix = "remove it (toydiff makes its own lock file)"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError as err:
        why = "a symbolic link" if os.path.islink(path) else "a folder" if os.path.isdir(path) else err.strerror
        raise UserError(f"cannot lock {what} {folder}: {path} is {why}; {fix}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise UserError(f"cannot lock {what} {folder}: {path} is not a plain file of its own "
                            f"({'a hard link' if stat.S_ISREG(st.st_mode) else 'a special file'}); {fix}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise UserError(f"{what} {folder} is in use by another process (pid {holder}); wait for it to "
                            "finish, or pick another folder") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:                 # a full disk: the pid only names the holder in a refusal; the lock holds
            pass
        yield
    finally:
        os.close(fd)                    # releases the lock


def _make_dirs(folder: str) -> list[str]:
    """`os.makedirs(folder, exist_ok=True)` that returns the folders it created, outermost first, so a failure
    part-way (a path longer than the OS allows) can take them back."""
    missing, head = [], os.path.normpath(folder)
    while head and not os.path.lexists(head):
        missing.append(head)
        head = os.path.dirname(head)
    created = []
    try:
        for path in reversed(missing):
            try:
                os.mkdir(path)
                created.append(path)
            except FileExistsError:     # another torchrun rank made it meanwhile
                if not os.path.isdir(path):
                    raise
    except OSError:
        _remove_dirs(created)
        raise
    return created


def _remove_dirs(created: list[str]) -> None:
    for path in reversed(created):
        try:
            os.rmdir(path)
        except OSError:
            pass


def writable_dir(folder: str, *, what: str) -> str:
    """Create `folder` if needed and prove it is writable with a uniquely named probe file (several torchrun
    ranks may probe the same folder at once). Failure is a UserError naming `what` it is, and leaves no folder it
    made."""
    created = []
    try:
        created = _make_dirs(folder)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as err:
        _remove_dirs(created)
        raise UserError(f"cannot write to {what} {folder} ({err.strerror or err}); pick another folder") from None
    return folder


@contextmanager
def output_dir(folder: str, *, what: str, lock: bool = True) -> Iterator[str]:
    """The folder a command writes into: made and proven writable (`writable_dir`), then held with
    `exclusive_lock` while the block writes, so two commands never mix their files in one folder."""
    writable_dir(folder, what=what)
    with exclusive_lock(folder, what=what) if lock else nullcontext():
        yield folder


def check_creatable(path: str, *, what: str, folder: bool = False) -> str:
    """Refuse now, creating nothing, a file (or with `folder`, a folder) that could not be written at `path` later:
    a folder or file in its place, a parent missing (for a file), a file or not writable, a name longer than the OS
    allows. For commands that work long before they write (the benchmarks): check first, write at the end."""
    def refuse(why: str):
        raise UserError(f"cannot write {what} {path} ({why}); pick another path")
    full = os.path.abspath(path)
    if os.path.lexists(full) and os.path.isdir(full) != folder:
        refuse("a file is in the way" if folder else "a folder is in the way")
    head = full if os.path.isdir(full) else os.path.dirname(full)
    while folder and not os.path.lexists(head):            # a folder's missing parents are made with it
        head = os.path.dirname(head)
    if not os.path.isdir(head):
        refuse(f"{head} is not a folder" if os.path.lexists(head) else f"{head} does not exist")
    if not os.access(head, os.W_OK | os.X_OK):
        refuse(f"{head} is not writable")
    name_max, path_max = os.pathconf(head, "PC_NAME_MAX"), os.pathconf(head, "PC_PATH_MAX")
    if len(full.encode()) >= path_max or any(len(p.encode()) > name_max for p in full.split(os.sep)):
        refuse("File name too long")
    return path
