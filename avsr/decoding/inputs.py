"""What to transcribe: files as given, folders walked for media files, and list files.

Every input gets a ``name``, the place of its outputs under ``avsr-decode --out-dir``: a folder's
files keep their path inside the folder (the tree is mirrored), a list's lines their path inside
the list's folder, a file given by itself its bare name. Two inputs of one name are numbered
(``talk.1``, ``talk.2``) so that no output overwrites another.

A list line, or a file found in a folder, that leads outside its folder (``..``, an absolute path,
a symlink) is not read: it becomes a one-line problem, reported, and the rest go on.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from avsr.media.paths import Confined, OutsideRootError

#: file suffixes taken from a folder (any file given by name, or listed, is tried whatever its suffix)
MEDIA_SUFFIXES = frozenset(
    ".mp4 .mkv .avi .mov .webm .m4v .mpg .mpeg .flv .ts .wmv .3gp .wav .flac .mp3 .m4a .aac .ogg .opus .wma".split()
)


@dataclass(frozen=True)
class Input:
    path: Path  # the file to read
    name: PurePosixPath  # its outputs' path under --out-dir, without suffix


def _walk(folder: Path) -> tuple[list[Input], list[str]]:
    """Media files under ``folder`` (recursive, sorted, hidden names skipped)."""
    found, problems = [], []
    confined = Confined(folder)
    for parent, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in MEDIA_SUFFIXES:
                continue
            relative = Path(parent, name).relative_to(folder)
            try:
                path = confined.inside(relative)
            except OutsideRootError as exc:
                problems.append(f"{Path(parent, name)}: {exc.problem}")
                continue
            found.append(Input(path, PurePosixPath(relative.as_posix()).with_suffix("")))
    return found, problems


def _read_list(listing: Path) -> tuple[list[Input], list[str]]:
    """One path per line, relative to the list's folder and inside it; blank lines and ``#`` comments skipped."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{listing}: cannot be read ({getattr(exc, 'strerror', None) or exc})"]
    found, problems = [], []
    confined = Confined(listing.parent)
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            path = confined.inside(entry)
        except OutsideRootError as exc:
            problems.append(f"{listing}:{number}: {exc}")
            continue
        relative = PurePosixPath(os.path.relpath(path, os.path.realpath(listing.parent)).replace(os.sep, "/"))
        found.append(Input(path, relative.with_suffix("")))
    return found, problems


def collect_inputs(paths: list[Path], lists: list[Path] = ()) -> tuple[list[Input], list[str]]:
    """The inputs of ``paths`` (files, or folders to walk) and ``lists``, in that order, and the
    problems found on the way (one line each). A path that does not exist is still an input: reading
    it gives the one-line error, like any unreadable file."""
    inputs: list[Input] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            found, bad = _walk(path)
        else:
            found, bad = [Input(path, PurePosixPath(path.stem))], []
        inputs += found
        problems += bad
    for listing in lists:
        found, bad = _read_list(listing)
        inputs += found
        problems += bad
    return _unique_names(inputs), problems


def _unique_names(inputs: list[Input]) -> list[Input]:
    counts, seen = Counter(i.name for i in inputs), Counter()
    unique = []
    for item in inputs:
        if counts[item.name] > 1:
            seen[item.name] += 1
            item = Input(item.path, item.name.with_name(f"{item.name.name}.{seen[item.name]}"))
        unique.append(item)
    return unique


__all__ = ["MEDIA_SUFFIXES", "Input", "collect_inputs"]
