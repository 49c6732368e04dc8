"""Manifests: one TSV per split listing prepared clips (paths relative to the manifest's folder).

Columns: ``id  video  audio  frames  samples  text``. The text is stored as text (never as token
ids) so that a tokenizer can be changed without preparing the data again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    """Write atomically, rows sorted by id, so reruns and shards produce identical files."""
    from avsr.media.atomic import atomic_path

    lines = ["\t".join(COLUMNS)] + [row.to_line() for row in sorted(rows, key=lambda r: r.id)]
    with atomic_path(path) as temp:
        Path(temp).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ManifestError(f"{path}: cannot read ({error.strerror or error})") from None
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise ManifestError(f"{path}:1: expected the header {' '.join(COLUMNS)!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise ManifestError(f"{path}:{number}: expected {len(COLUMNS)} tab-separated fields, found {len(fields)}")
        try:
            frames, samples = int(fields[3]), int(fields[4])
        except ValueError:
            raise ManifestError(f"{path}:{number}: frames and samples must be integers") from None
        rows.append(ManifestRow(fields[0], fields[1], fields[2], frames, samples, fields[5]))
    return rows


def resolve(manifest: str | os.PathLike[str], relative: str) -> Path:
    """A row's media path as an absolute path (rows are relative to the manifest's folder)."""
    return (Path(manifest).parent / relative).resolve()
