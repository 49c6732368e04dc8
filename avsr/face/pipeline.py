"""Frames in, mouth crops out: landmarks from any backend, then gap filling, smoothing, alignment."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avsr.face.align import MouthCropConfig, MouthCropper, MouthCrops
from avsr.face.errors import FaceAlignmentError, LandmarksFileError, NoFaceError
from avsr.face.landmarker import VideoLandmarker
from avsr.face.temporal import LandmarkSequence

# Landmarks made from another decode of the same video may have a frame or two more or fewer
# (decoders differ at the ends); beyond this many, they belong to some other video.
LENGTH_TOLERANCE = 3


def crop_mouths(
    frames: Sequence[np.ndarray] | np.ndarray,
    landmarker: VideoLandmarker | LandmarkSequence,
    config: MouthCropConfig | MouthCropper | None = None,
    *,
    source: str | None = None,
) -> MouthCrops:
    """Mouth crops of a video's frames ((T, H, W, 3) RGB uint8, or a list of such frames).

    ``landmarker`` is a :class:`VideoLandmarker` (dlib, stored landmarks...) or the landmarks
    themselves (per frame (68, 2) or None, or (T, 68, 2) with NaN). Stored landmarks may differ
    from the frame count by up to ``LENGTH_TOLERANCE`` frames: extra ones are dropped, missing
    ones count as undetected (held from the last frame). ``MouthCrops.detected`` says which frames
    had landmarks of their own. Raises :class:`NoFaceError` when no frame has a face; ``source``
    (e.g. the video's path) prefixes the one-line messages of the errors raised here.
    """
    cropper = config if isinstance(config, MouthCropper) else MouthCropper(config)
    try:
        if isinstance(landmarker, VideoLandmarker):
            landmarks = landmarker.landmarks(frames)
        else:
            landmarks = landmarker
        landmarks = _match_length(landmarks, len(frames))
        return cropper.crop(frames, landmarks)
    except LandmarksFileError:
        raise  # already names its file
    except (NoFaceError, FaceAlignmentError) as exc:
        if source is None:
            raise
        raise type(exc)(f"{source}: {exc}") from None
    except ValueError as exc:
        if source is None:
            raise
        raise ValueError(f"{source}: {exc}") from None


def _match_length(landmarks: LandmarkSequence, count: int) -> LandmarkSequence:
    have = len(landmarks)
    if have == count:
        return landmarks
    if abs(have - count) > LENGTH_TOLERANCE:
        raise ValueError(f"landmarks for {have} frames, but the video has {count}")
    if isinstance(landmarks, np.ndarray) and landmarks.dtype != object:
        if have > count:
            return landmarks[:count]
        pad = np.full((count - have, *landmarks.shape[1:]), np.nan, dtype=np.float64)
        return np.concatenate([landmarks.astype(np.float64), pad])
    landmarks = list(landmarks)
    return landmarks[:count] + [None] * (count - have)
