"""A still strip of a clip's frames (PNG), to see what a corpus looks like without a video player."""

from __future__ import annotations

import os

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
    strip = frame_strip(clip.frames, count, columns)
    if not cv2.imwrite(os.fspath(png), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{png}: could not write the PNG")
