"""Paths read from a file stay inside the folder they belong to.

Corpus split lists, manifests, landmark folders and model folders all name other files by relative
path. A line such as ``../../../etc/passwd``, an absolute path, or a symlink leading out of the
folder must not make avsr read or write outside it. Every such path goes through :func:`inside`.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutsideRootError(ValueError):
    """A path named in a list, manifest or config leaves the folder it must stay in.

    ``str(err)`` is one line ``<path>: <problem>`` like :class:`avsr.media.MediaError`;
    ``err.path`` and ``err.problem`` hold the two parts.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type[OutsideRootError], tuple[str, str]]:
        return (type(self), (self.path, self.problem))


def inside(root: str | os.PathLike[str], relative: str | os.PathLike[str], *, follow_links: bool = True) -> Path:
    """``root / relative`` with ``..`` (and symlinks) resolved, if it stays inside ``root``.

    ``relative`` may also be absolute (it must then lie inside ``root`` too). The file need not
    exist (outputs are checked before they are written). Raises :class:`OutsideRootError` naming
    the joined path otherwise, so a caller can report the item and go on.

    ``follow_links=False`` checks the text alone (no file-system calls, about 20 times faster):
    for long lists such as manifests, whose folder's own symlinks (``video/`` on another disk) are
    its owner's choice; the result is then ``root``-joined and normalised, not resolved.
    """
    joined = os.path.join(root, relative)
    if "\x00" in joined:
        raise OutsideRootError(joined.replace("\x00", "\\x00"), "path contains a NUL byte")
    resolve = os.path.realpath if follow_links else os.path.abspath
    base, target = resolve(root), resolve(joined)
    if target != base and not target.startswith(base.rstrip(os.sep) + os.sep):
        raise OutsideRootError(joined, f"path leads outside {base}")
    return Path(target)
