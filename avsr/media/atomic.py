"""Write-then-rename, so a killed process never leaves a half-written file under the final name.

The temporary files of writes in progress are known to :func:`remove_unfinished`, which a process
told to stop (a batch worker's SIGTERM handler) calls before it exits, so none is left behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

_unfinished: set[str] = set()  # temporary files of the writes in progress in this process


def remove_unfinished() -> None:
    """Delete the temporary files of every write in progress (safe to call from a signal handler)."""
    for temp in list(_unfinished):
        try:
            os.unlink(temp)
        except OSError:
            pass


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary file lives in the same directory (a rename across file systems is not atomic),
    is hidden (leading dot) and is removed if the block raises. Missing parent directories are
    created. The file is fsync'ed before the rename so a crash cannot expose an empty file.
    """
    final = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(final)
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    _unfinished.add(temp)  # before it exists: a stop between the two lines still removes it
    try:
        # Created here (mode 0o666 minus umask, like a plain open) so the writer may reopen it by name.
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield temp
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    finally:
        _unfinished.discard(temp)
