"""Writing files safely: every output goes through a uniquely named temp file in its folder, then `os.replace`.

A crash at any moment leaves the old file or the new one, never a truncated mix; the temp name is created
exclusively (`tempfile.mkstemp`, O_EXCL), so a file or link planted at a predictable name is never followed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from typing import IO

import numpy as np

from .errors import UserError

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str, write: Callable[[IO[bytes]], None], *, durable: bool = False) -> None:
    """Call `write(f)` on a fresh temp file beside `path`, then rename it over `path`. `durable` also fsyncs the
    file and the folder (checkpoints: the rename survives a power loss). On any error the temp file is removed
    and `path` is untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if durable:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)            # make the rename itself durable
        finally:
            os.close(dir_fd)


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
