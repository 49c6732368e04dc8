"""Manifests: one TSV per split listing prepared clips (paths relative to the manifest's folder).

Columns: ``id  video  audio  frames  samples  text``. The text is stored as text (never as token
ids) so that a tokenizer can be changed without preparing the data again. A row whose media path
leads outside the manifest's folder (``..``, absolute) is refused when the manifest is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from avsr.media.paths import OutsideRootError, inside

COLUMNS = ("id", "video", "audio", "frames", "samples", "text")


class ManifestError(ValueError):
    """A malformed manifest; the message names the file and line."""


@dataclass(frozen=True)
class ManifestRow:
    id: str
    video: str  # mouth-crop mp4, relative to the manifest's directory
    audio: str  # 16 kHz mono wav, relative to the manifest's directory
    frames: int
    samples: int
    text: str

    def to_line(self) -> str:
        for name in ("id", "video", "audio", "text"):
            if any(c in getattr(self, name) for c in "\t\n"):
                raise ManifestError(f"{self.id}: {name} contains a tab or newline")
        return "\t".join(str(getattr(self, name)) for name in COLUMNS)


def write_manifest(path: str | os.PathLike[str], rows: list[ManifestRow]) -> None:
    """Write atomically, rows sorted by id, so reruns and shards produce identical files.

    A write that fails (disk full) raises a one-line MediaError naming ``path`` and leaves no
    temporary file."""
    from avsr.media.atomic import atomic_path
    from avsr.media.errors import media_errors

    lines = ["\t".join(COLUMNS)] + [row.to_line() for row in sorted(rows, key=lambda r: r.id)]
    with media_errors(path, writing=True), atomic_path(path) as temp:
        Path(temp).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Rows of a manifest; any problem is a one-line :class:`ManifestError` naming file and line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            lines = handle.read().split("\n")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read manifest ({error.strerror or error})") from None
    lines = [line.rstrip("\r") for line in lines]
    if not lines or not lines[0]:
        raise ManifestError(f"{path}: empty file, expected a manifest with header {' '.join(COLUMNS)}")
    if tuple(lines[0].split("\t")) != COLUMNS:
        raise ManifestError(
            f"{path}:1: not a manifest header (expected tab-separated {' '.join(COLUMNS)}, got {lines[0][:80]!r})"
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise ManifestError(
                f"{path}:{number}: expected {len(COLUMNS)} tab-separated fields ({', '.join(COLUMNS)}), found {len(fields)}"
            )
        try:
            frames, samples = int(fields[3]), int(fields[4])
        except ValueError:
            raise ManifestError(f"{path}:{number}: frames and samples must be integers") from None
        for column in (1, 2):
            try:  # by text: a manifest is a list of names; its folder's own symlinks are its owner's
                inside(path.parent, fields[column], follow_links=False)
            except OutsideRootError as error:
                raise ManifestError(f"{path}:{number}: {COLUMNS[column]} {fields[column]!r} {error.problem}") from None
        rows.append(ManifestRow(fields[0], fields[1], fields[2], frames, samples, fields[5].strip()))
    return rows


def read_manifest_texts(path: str | os.PathLike[str]) -> list[str]:
    """The transcripts of a manifest, in file order, as written (not normalised); none may be empty."""
    rows = read_manifest(path)
    for row in rows:
        if not row.text:
            number = _line_of(path, row.id)
            raise ManifestError(f"{path}:{number}: empty transcript (id {row.id!r})")
    return [row.text for row in rows]


def _line_of(path: str | os.PathLike[str], item_id: str) -> int:
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if line.split("\t", 1)[0] == item_id and number > 1:
                return number
    return 0


def resolve(manifest: str | os.PathLike[str], relative: str) -> Path:
    """A row's media path as an absolute path (rows are relative to the manifest's folder, and
    must stay inside it by their text, as :func:`read_manifest` checks; ManifestError otherwise)."""
    try:
        return inside(Path(manifest).parent, relative, follow_links=False).resolve()
    except OutsideRootError as error:
        raise ManifestError(f"{manifest}: {relative!r} {error.problem}") from None
