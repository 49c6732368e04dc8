"""Still strips (PNG), to see what a corpus looks like without a video player: a clip's frames, or
the corpus's people side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from avsr.media import read_video


def frame_strip(frames: np.ndarray, count: int = 8, columns: int = 8) -> np.ndarray:
    """``count`` evenly spaced frames tiled left to right, top to bottom (RGB uint8)."""
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    tiles = [frames[i] for i in picks]
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    blank = np.zeros_like(tiles[0])
    rows = [row + [blank] * (columns - len(row)) for row in rows] if len(rows) > 1 else rows
    return np.vstack([np.hstack(row) for row in rows])


def write_strip(video: str | os.PathLike[str], png: str | os.PathLike[str], count: int = 8, columns: int = 8) -> None:
    clip = read_video(video, with_audio=False)
    _write_png(frame_strip(clip.frames, count, columns), png)


def write_people_strip(root: str | os.PathLike[str], png: str | os.PathLike[str], count: int = 8) -> int:
    """One frame of each of the corpus's first ``count`` speakers, left to right: the middle frame
    of the speaker's first clip, as ``synth_meta.json`` lists them. Returns how many are shown."""
    root = Path(root)
    meta = json.loads((root / "synth_meta.json").read_text(encoding="utf-8"))
    first_clip: dict[int, str] = {}
    for utterance in meta["utterances"]:
        first_clip.setdefault(int(utterance["speaker"]), utterance["key"])
    tiles = []
    for speaker in sorted(first_clip)[:count]:
        frames = read_video(root / f"{first_clip[speaker]}.mp4", with_audio=False).frames
        tiles.append(frames[len(frames) // 2])
    if not tiles:
        raise ValueError(f"{root}: the corpus lists no clips")
    _write_png(np.hstack(tiles), png)
    return len(tiles)


def _write_png(image: np.ndarray, png: str | os.PathLike[str]) -> None:
    """Write (H, W, 3) uint8 RGB as a PNG; OSError naming the file when it cannot be written."""
    if not cv2.imwrite(os.fspath(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{png}: could not write the PNG")
