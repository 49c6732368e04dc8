"""Faces and mouths: 68-point landmarks per frame, smoothed over time, aligned to a mean face, mouth crop.

Landmarks come from a :class:`VideoLandmarker` backend: :class:`DlibVideoLandmarker` (dlib's HOG
detector and 68-point predictor, tracking between sparse detections) or landmark files computed
elsewhere (:class:`PrecomputedLandmarks`: auto_avsr's LRS2/LRS3 pickles, loaded safely, or our
``.npy``). :class:`FaceChain` turns frames (and a landmarker, or landmarks) into :class:`MouthCrops`
the way auto_avsr's preprocessing does (gap filling, smoothing, similarity alignment, square crop),
or AV-HuBERT's (``MouthCropConfig.for_style("avhubert")``): the one chain preparation and decoding use.

Every problem with one video is a ``ValueError`` subclass with a one-line message
(:class:`NoFaceError`, :class:`FaceAlignmentError`, :class:`LandmarksFileError`).

A video with several faces: :meth:`FaceChain.face_tracks` follows each (:class:`FaceTrack`), and
the chain crops any one of them.
"""

from avsr.face.align import MOUTH, STABLE_POINTS, MouthCropConfig, MouthCropper, MouthCrops, default_mean_face
from avsr.face.dlib_landmarker import DlibLandmarker, shape_predictor_path
from avsr.face.dlib_video import DlibVideoLandmarker, TrackingStats
from avsr.face.errors import FaceAlignmentError, LandmarksFileError, NoFaceError
from avsr.face.landmarker import VideoLandmarker
from avsr.face.pipeline import FaceChain
from avsr.face.precomputed import (
    PrecomputedLandmarks,
    SafeUnpickler,
    StoredLandmarks,
    load_landmarks_file,
    safe_pickle_loads,
    save_landmarks,
)
from avsr.face.temporal import fill_missing, fill_with_mask, smooth_landmarks, smooth_landmarks_ahead
from avsr.face.tracks import FaceTrack, FaceTracker, track_faces

__all__ = [
    "MOUTH",
    "STABLE_POINTS",
    "DlibLandmarker",
    "DlibVideoLandmarker",
    "FaceAlignmentError",
    "FaceChain",
    "FaceTrack",
    "FaceTracker",
    "LandmarksFileError",
    "MouthCropConfig",
    "MouthCropper",
    "MouthCrops",
    "NoFaceError",
    "PrecomputedLandmarks",
    "SafeUnpickler",
    "StoredLandmarks",
    "TrackingStats",
    "VideoLandmarker",
    "default_mean_face",
    "fill_missing",
    "fill_with_mask",
    "load_landmarks_file",
    "safe_pickle_loads",
    "save_landmarks",
    "shape_predictor_path",
    "smooth_landmarks",
    "smooth_landmarks_ahead",
    "track_faces",
]
