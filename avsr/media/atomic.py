"""Write-then-rename, so a killed process never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager


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
    # Created here (mode 0o666 minus umask, like a plain open) so the writer may reopen it by name.
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
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
