"""A rigged face photograph: the image, dlib's 68 landmarks and a soft head-and-shoulders mask.

The rig is what every synthetic identity is made of: ``rig_photo`` finds the landmarks once, and
the mouth renderer and the talking face read the geometry from here (photo pixels throughout).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceRig:
    """The photograph, its landmarks and the geometry derived from them, in photo pixels."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) float64
    person_mask: np.ndarray  # (H, W) float32 in [0, 1]: head and shoulders, soft edge

    @property
    def mouth_width(self) -> float:
        return float(np.linalg.norm(self.landmarks[54] - self.landmarks[48]))

    @property
    def face_width(self) -> float:
        return float(np.linalg.norm(self.landmarks[16] - self.landmarks[0]))

    @property
    def face_centre(self) -> np.ndarray:
        eyes = self.landmarks[36:48].mean(axis=0)
        mouth = self.landmarks[48:68].mean(axis=0)
        return (eyes + mouth) / 2


def rig_photo(image: np.ndarray) -> FaceRig:
    """Rig an RGB photograph (H, W, 3) uint8 with its largest face; ValueError when none is found.

    A small photograph is searched upsampled twice, so that faces down to about 20 px are found.
    """
    from avsr.face import DlibLandmarker

    upsample = 1 if min(image.shape[:2]) >= 200 else 2
    landmarks = DlibLandmarker(upsample=upsample)(image)
    if landmarks is None:
        raise ValueError("dlib found no face in the photograph")
    return FaceRig(image, landmarks.astype(np.float64), person_mask(image.shape[:2], landmarks))


@lru_cache(maxsize=1)
def astronaut_rig() -> FaceRig:
    """Rig the astronaut photograph (cached: dlib's predictor takes a second to load)."""
    import skimage.data

    return rig_photo(skimage.data.astronaut())


def person_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1] from the 68 landmarks: head (with hair) as an ellipse, neck and
    shoulders as a widening band, blurred edge."""
    height, width = shape
    face_width = np.linalg.norm(landmarks[16] - landmarks[0])
    centre_x = landmarks[27:36, 0].mean()
    chin_y = landmarks[8, 1]
    brow_y = landmarks[17:27, 1].mean()
    mask = np.zeros((height, width), np.uint8)
    head_centre = (int(centre_x), int((brow_y + chin_y) / 2 - 0.12 * face_width))
    head_axes = (int(0.8 * face_width), int(0.95 * face_width))
    cv2.ellipse(mask, head_centre, head_axes, 0, 0, 360, 255, -1)
    top = chin_y - 0.1 * face_width
    half_top = 0.45 * face_width
    shoulders = np.array(
        [
            (centre_x - half_top, top),
            (centre_x + half_top, top),
            (centre_x + half_top + 1.2 * (height - top), height),
            (centre_x - half_top - 1.2 * (height - top), height),
        ],
        np.int32,
    )
    cv2.fillPoly(mask, [shoulders], 255)
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 0.03 * face_width)
