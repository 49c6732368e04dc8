"""See the crops: a contact sheet (PNG) and a side-by-side video of a few prepared items.

For each item: the source frame with its 68 landmarks (green where detected in that frame,
orange where interpolated) and the mouth crop, scaled to the same height.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avsr.data.corpora import CorpusItem
from avsr.data.preparation.clip import ClipPreparer, PreparedClip, SkipItem

TILE_HEIGHT = 160
SECONDS = 2.0


def side_by_side(clip: PreparedClip, index: int) -> np.ndarray:
    """One RGB panel: frame ``index`` with landmarks | its mouth crop."""
    frame = clip.frames[index].copy()
    colour = (0, 220, 0) if clip.detected[index] else (255, 150, 0)
    radius = max(1, frame.shape[0] // 200)
    for x, y in clip.landmarks[index]:
        cv2.circle(frame, (int(round(x)), int(round(y))), radius, colour, -1, cv2.LINE_AA)
    scale = TILE_HEIGHT / frame.shape[0]
    frame = cv2.resize(frame, (int(round(frame.shape[1] * scale)), TILE_HEIGHT), interpolation=cv2.INTER_AREA)
    crop = cv2.resize(clip.crops[index], (TILE_HEIGHT, TILE_HEIGHT), interpolation=cv2.INTER_NEAREST)
    return np.hstack([frame, cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)])


def _pad_width(panels: list[np.ndarray]) -> list[np.ndarray]:
    width = max(p.shape[1] for p in panels)
    return [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in panels]


def write_preview(items: list[CorpusItem], preparer: ClipPreparer, png: Path, mp4: Path, columns: int = 4) -> int:
    """Contact sheet of the middle frame of each item, and a video of their first seconds.

    Returns how many items could be shown (skipped items are left out).
    """
    from avsr.media import write_mp4

    sheet_panels, video_frames = [], []
    for item in items:
        try:
            clip = preparer.load(item)
        except SkipItem:
            continue
        sheet_panels.append(side_by_side(clip, len(clip.crops) // 2))
        count = min(len(clip.crops), int(SECONDS * 25))
        video_frames += [side_by_side(clip, i) for i in range(count)]
    if not sheet_panels:
        return 0
    panels = _pad_width(sheet_panels)
    blank = np.zeros_like(panels[0])
    rows = [panels[i : i + columns] for i in range(0, len(panels), columns)]
    rows = [row + [blank] * (columns - len(row)) for row in rows] if len(rows) > 1 else rows
    sheet = np.vstack([np.hstack(row) for row in rows])
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{png}: could not write the PNG")
    write_mp4(mp4, np.stack(_pad_width(video_frames)))
    return len(sheet_panels)
