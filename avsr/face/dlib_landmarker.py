"""dlib's HOG face detector + 68-point shape predictor (the model ships in face-recognition-models).

The predictor file is located without importing face_recognition_models, whose __init__ needs
pkg_resources (gone from recent setuptools).
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def shape_predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (it carries dlib's 68-point model)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise RuntimeError(f"{path}: dlib's 68-point shape predictor is missing")
    return path


@lru_cache(maxsize=1)
def shape_predictor():
    """dlib's 68-point shape predictor, loaded once per process (the file is 100 MB, about a second).

    Prediction does not change the model, so every landmarker in the process shares it.
    """
    import dlib

    return dlib.shape_predictor(str(shape_predictor_path()))


_detectors = threading.local()


def face_detector():
    """dlib's HOG frontal face detector, built once per thread.

    Building one deserialises its model and takes about 0.4 s, more than landmarking a whole clip
    (the synthetic corpus's casting built two per candidate face: a third of its time). dlib's
    detector keeps scratch state while it runs, so threads do not share one.
    """
    detector = getattr(_detectors, "detector", None)
    if detector is None:
        import dlib

        detector = _detectors.detector = dlib.get_frontal_face_detector()
    return detector


def shape_to_array(shape) -> np.ndarray:
    """A dlib full_object_detection as a (68, 2) float32 array of (x, y)."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class DlibLandmarker:
    """Finds the largest face in an RGB image and returns its 68 landmarks as (68, 2) float32 (x, y).

    `upsample` is dlib's pyramid upsampling: 0 finds faces of about 80 px and larger, 1 of about 40 px.
    """

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._detector = face_detector()
        self._predictor = shape_predictor()

    def detect_face(self, image: np.ndarray):
        """The largest face rectangle (a dlib.rectangle), or None."""
        faces = self._detector(np.ascontiguousarray(image), self.upsample)
        if len(faces) == 0:
            return None
        return max(faces, key=lambda r: r.width() * r.height())

    def landmarks_in(self, image: np.ndarray, face) -> np.ndarray:
        return shape_to_array(self._predictor(np.ascontiguousarray(image), face))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        face = self.detect_face(image)
        return None if face is None else self.landmarks_in(image, face)
