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
    For many paths under one root, :class:`Confined` does the same checks faster.
    """
    return Confined(root, follow_links=follow_links).inside(relative)


class Confined:
    """A root whose paths are checked many times (a corpus listing): the root's real path and each
    folder's are resolved once, then only a path's last part is looked at (is it a symlink?).

    ``Confined(root).inside(relative)`` means exactly :func:`inside` ``(root, relative)``.
    """

    def __init__(self, root: str | os.PathLike[str], *, follow_links: bool = True) -> None:
        self.root = os.fspath(root)
        self.follow_links = follow_links
        self.base = os.path.realpath(root) if follow_links else os.path.abspath(root)
        self._prefix = self.base.rstrip(os.sep) + os.sep
        self._folders: dict[str, str] = {}  # folder as joined -> its real path

    def _resolve(self, joined: str) -> str:
        if not self.follow_links:
            return os.path.abspath(joined)
        folder, name = os.path.split(joined)
        if name in ("", ".", ".."):
            return os.path.realpath(joined)
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        target = os.path.join(real, name)
        return os.path.realpath(target) if os.path.islink(target) else target

    def inside(self, relative: str | os.PathLike[str]) -> Path:
        return Path(self.resolve(relative))

    def resolve(self, relative: str | os.PathLike[str]) -> str:
        """:meth:`inside` as a plain string (no Path built: listings call this 100k times)."""
        joined = os.path.join(self.root, relative)
        if "\x00" in joined:
            raise OutsideRootError(joined.replace("\x00", "\\x00"), "path contains a NUL byte")
        target = self._resolve(joined)
        if target != self.base and not target.startswith(self._prefix):
            raise OutsideRootError(joined, f"path leads outside {self.base}")
        return target
