"""Landmarks over time: fill the frames without a face, smooth the rest.

Both steps follow auto_avsr's preprocessing (mpc001/auto_avsr, commit 182b628,
``preparation/detectors/retinaface/video_process.py``), so that crops made here line up with crops
made there: gaps are filled by linear interpolation between the nearest frames that have
landmarks and the ends are held (``interpolate_landmarks`` / ``linear_interpolate``, lines 14-22
and 120-145); smoothing is a centred moving mean whose half-width shrinks near the ends, after
which each frame's own centroid is put back, so only shape, scale and rotation are smoothed and
the face never lags behind a moving head (``crop_patch``, lines 90-107).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avsr.face.errors import NoFaceError

NUM_POINTS = 68

LandmarkSequence = Sequence["np.ndarray | None"] | np.ndarray
"""Per-frame landmarks: a list with one (68, 2) array or None per frame, or a (T, 68, 2) array
with NaN in the frames that have none."""


def as_landmark_array(landmarks: LandmarkSequence) -> tuple[np.ndarray, np.ndarray]:
    """(T, 68, 2) float64 with NaN rows for missing frames, and the (T,) mask of frames present.

    A frame is missing if it is None or has any non-finite coordinate.
    """
    if isinstance(landmarks, np.ndarray) and landmarks.dtype != object:
        array = np.asarray(landmarks, dtype=np.float64)
        if array.ndim != 3 or array.shape[1:] != (NUM_POINTS, 2):
            raise ValueError(f"landmarks must have shape (T, {NUM_POINTS}, 2), not {array.shape}")
        array = array.copy()
    else:
        array = np.full((len(landmarks), NUM_POINTS, 2), np.nan)
        for index, points in enumerate(landmarks):
            if points is None:
                continue
            points = np.asarray(points, dtype=np.float64)
            if points.shape != (NUM_POINTS, 2):
                raise ValueError(f"frame {index}: landmarks must have shape ({NUM_POINTS}, 2), not {points.shape}")
            array[index] = points
    present = np.isfinite(array).all(axis=(1, 2))
    array[~present] = np.nan
    return array, present


def fill_missing(landmarks: LandmarkSequence) -> np.ndarray:
    """(T, 68, 2) float64 with every frame filled.

    A gap between two frames with landmarks is filled linearly; frames before the first and after
    the last frame with landmarks repeat those. Raises :class:`NoFaceError` if no frame has any.
    """
    return fill_with_mask(landmarks)[0]


def fill_with_mask(landmarks: LandmarkSequence) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fill_missing` and the (T,) bool mask of the frames that had landmarks of their own."""
    array, present = as_landmark_array(landmarks)
    count = len(array)
    if count == 0:
        raise NoFaceError("the video has no frames")
    known = np.flatnonzero(present)
    if len(known) == 0:
        raise NoFaceError(f"no face found in any of the {count} frames")
    if len(known) == count:
        return array, present
    # Each frame lies between the last known frame at or before it and the next known one; clamping
    # to the known range holds the ends. Same formula as auto_avsr: start + k / (stop - start) * delta.
    frames = np.clip(np.arange(count), known[0], known[-1])
    position = np.searchsorted(known, frames, side="right") - 1
    left = known[position]
    right = known[np.minimum(position + 1, len(known) - 1)]
    weight = np.where(right > left, (frames - left) / np.maximum(right - left, 1), 0.0)
    filled = array[left] + weight[:, None, None] * (array[right] - array[left])
    filled[present] = array[present]
    return filled, present


def smooth_landmarks(landmarks: np.ndarray, window: int = 12) -> np.ndarray:
    """Centred moving mean over time, keeping each frame's centroid; (T, P, 2) float64.

    Frame t averages frames t-m..t+m with m = min(window // 2, t, T - 1 - t) (the window shrinks
    symmetrically at the ends), then is shifted so its centroid is frame t's own. ``window`` <= 1
    leaves the landmarks unchanged.
    """
    array = np.asarray(landmarks, dtype=np.float64)
    if array.ndim != 3 or not np.isfinite(array).all():
        raise ValueError("smooth_landmarks needs a (T, P, 2) array without missing frames (use fill_missing)")
    count = len(array)
    half = max(int(window) // 2, 0)
    if count == 0 or half == 0:
        return array.copy()
    frames = np.arange(count)
    margin = np.minimum(np.minimum(half, frames), count - 1 - frames)
    cumulative = np.concatenate([np.zeros((1,) + array.shape[1:]), np.cumsum(array, axis=0)])
    sums = cumulative[frames + margin + 1] - cumulative[frames - margin]
    smoothed = sums / (2 * margin + 1)[:, None, None]
    smoothed += array.mean(axis=1, keepdims=True) - smoothed.mean(axis=1, keepdims=True)
    return smoothed


def smooth_landmarks_ahead(landmarks: np.ndarray, window: int = 12) -> np.ndarray:
    """AV-HuBERT's smoothing (``avhubert/preparation/align_mouth.py``, ``crop_patch``); (T, P, 2).

    Frame t averages itself and the next m - 1 frames, m = min(window, T); the last m - 1 frames,
    which have no full window ahead, take frame T - m's mean (AV-HuBERT reuses that frame's
    transform for them). No centroid correction. ``window`` <= 1 leaves the landmarks unchanged.
    """
    array = np.asarray(landmarks, dtype=np.float64)
    if array.ndim != 3 or not np.isfinite(array).all():
        raise ValueError("smooth_landmarks_ahead needs a (T, P, 2) array without missing frames (use fill_missing)")
    count = len(array)
    margin = min(int(window), count)
    if count == 0 or margin <= 1:
        return array.copy()
    cumulative = np.concatenate([np.zeros((1,) + array.shape[1:]), np.cumsum(array, axis=0)])
    starts = np.minimum(np.arange(count), count - margin)
    return (cumulative[starts + margin] - cumulative[starts]) / margin
