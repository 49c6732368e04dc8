"""What every landmark backend offers: per-frame 68-point landmarks for a video."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VideoLandmarker(Protocol):
    """Landmarks for the frames of one video, in order.

    ``landmarks(frames)`` returns one (68, 2) float32 array of (x, y) pixel coordinates (iBUG 300-W
    point order) or None per frame; None means no face in that frame. Frames are (H, W, 3) uint8
    RGB or (H, W) uint8 grayscale.
    """

    def landmarks(self, frames: Iterable[np.ndarray]) -> list[np.ndarray | None]: ...
