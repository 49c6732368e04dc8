"""Frames in, mouth crops out (`FaceChain`): landmarks from any backend, then gap filling,
smoothing, alignment and the crop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from avsr.face.align import MouthCropConfig, MouthCropper, MouthCrops
from avsr.face.errors import LandmarksFileError
from avsr.face.landmarker import VideoLandmarker
from avsr.face.temporal import LandmarkSequence
from avsr.face.tracks import FaceTrack, FaceTracker

# Landmarks made from another decode of the same video may have a frame or two more or fewer
# (decoders differ at the ends); beyond this many, they belong to some other video.
LENGTH_TOLERANCE = 3


class FaceChain:
    """Frames in, mouth crops out, the one way every command makes them: landmarks from a
    :class:`VideoLandmarker` (dlib with tracking, stored landmark files) or given, then gap
    filling, smoothing, alignment to the mean face and the square crop (:class:`MouthCropper`).

    Built once and reused (dlib's models load once per chain). ``avsr-prepare`` makes its
    training crops with it and ``avsr-decode`` its test crops, so a model sees the same crops.
    The two steps are apart (``landmarks``, ``crop``) for callers that time them; ``__call__``
    does both. ``source`` (e.g. the video's path) prefixes the one-line messages of the errors.
    """

    def __init__(
        self, landmarker: VideoLandmarker | None = None, config: MouthCropConfig | MouthCropper | None = None
    ) -> None:
        self.landmarker = landmarker
        self.cropper = config if isinstance(config, MouthCropper) else MouthCropper(config)

    @classmethod
    def dlib(cls, detect_every: int = 10, config: MouthCropConfig | MouthCropper | None = None) -> FaceChain:
        """dlib's detector every ``detect_every`` frames, tracking in between (1: detect on every frame)."""
        from avsr.face.dlib_video import DlibVideoLandmarker

        return cls(DlibVideoLandmarker(track=detect_every > 1, detect_every=detect_every), config)

    def landmarks(self, frames: Sequence[np.ndarray] | np.ndarray) -> LandmarkSequence:
        """The landmarker's landmarks of ``frames``: per frame (68, 2) or None."""
        if self.landmarker is None:
            raise ValueError("this face chain has no landmarker: give the landmarks")
        return self.landmarker.landmarks(frames)

    def face_tracks(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[FaceTrack]:
        """Every face of ``frames``, each followed as one person (:mod:`avsr.face.tracks`); a
        landmarker that follows one face only (stored landmarks) gives that one track."""
        if self.landmarker is None:
            raise ValueError("this face chain has no landmarker: give the landmarks")
        if isinstance(self.landmarker, FaceTracker):
            return self.landmarker.tracks(frames)
        track = FaceTrack.from_landmarks(self.landmarks(frames))
        return [track] if track.found.any() else []

    def crop(
        self, frames: Sequence[np.ndarray] | np.ndarray, landmarks: LandmarkSequence, *, source: str | None = None
    ) -> MouthCrops:
        """Mouth crops of ``frames`` ((T, H, W, 3) RGB uint8, or a list of such frames) from
        ``landmarks`` (per frame (68, 2) or None, or (T, 68, 2) with NaN). Stored landmarks may
        differ from the frame count by up to ``LENGTH_TOLERANCE`` frames: extra ones are dropped,
        missing ones count as undetected (held from the last frame). ``MouthCrops.detected`` says
        which frames had landmarks of their own. Raises :class:`NoFaceError` when no frame has a face."""
        with _named(source):
            return self.cropper.crop(frames, _match_length(landmarks, len(frames)))

    def __call__(
        self,
        frames: Sequence[np.ndarray] | np.ndarray,
        landmarks: LandmarkSequence | None = None,
        *,
        source: str | None = None,
    ) -> MouthCrops:
        """``crop(frames, landmarks or self.landmarks(frames))``."""
        if landmarks is None:
            with _named(source):
                landmarks = self.landmarks(frames)
        return self.crop(frames, landmarks, source=source)


@contextmanager
def _named(source: str | None) -> Iterator[None]:
    """One-line errors about one video prefixed with ``source`` (a landmarks file's error already names its file)."""
    try:
        yield
    except LandmarksFileError:
        raise
    except ValueError as exc:  # NoFaceError and FaceAlignmentError are ValueErrors
        if source is None:
            raise
        raise type(exc)(f"{source}: {exc}") from None


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
