"""Who is this? dlib's face recogniser: a 128-D descriptor per face, and distances between them.

dlib's ResNet model (``dlib_face_recognition_resnet_model_v1.dat``, shipped in
face-recognition-models beside the 68-point predictor) maps an aligned face to a 128-D vector;
its authors' threshold is 0.6: two faces closer than that are judged the same person (99.38% on
LFW). The synthetic corpus uses it to check that its speakers are different people.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np

from avsr.face.dlib_landmarker import shape_predictor_path

RECOGNISER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SAME_PERSON = 0.6  # dlib's threshold: closer descriptors are the same person


def recogniser_path():
    path = shape_predictor_path().parent / RECOGNISER_FILE
    if not path.is_file():
        raise RuntimeError(f"{path}: dlib's face recognition model is missing")
    return path


@lru_cache(maxsize=1)
def recogniser():
    """dlib's face recognition ResNet, loaded once per process (about 20 MB)."""
    import dlib

    return dlib.face_recognition_model_v1(str(recogniser_path()))


@lru_cache(maxsize=2)
def landmarker(upsample: int):
    """A DlibLandmarker kept for the process (building dlib's detector takes a second or two)."""
    from avsr.face import DlibLandmarker

    return DlibLandmarker(upsample=upsample)


def face_descriptor(image: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """The 128-D descriptor (float64) of the largest face in an RGB uint8 image (H, W, 3); None
    when dlib finds no face."""
    import dlib

    from avsr.face.dlib_landmarker import shape_predictor

    image = np.ascontiguousarray(image)
    face = landmarker(upsample).detect_face(image)
    if face is None:
        return None
    shape = shape_predictor()(image, face)
    chip = dlib.get_face_chip(image, shape, size=150, padding=0.25)
    return np.asarray(recogniser().compute_face_descriptor(chip), dtype=np.float64)


def distance_matrix(descriptors: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """(N, N) Euclidean distances between N descriptors (N, 128), or (N, M) to M ``others``."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    others = descriptors if others is None else np.asarray(others, dtype=np.float64)
    return np.linalg.norm(descriptors[:, None, :] - others[None, :, :], axis=-1)


def closest_pairs(distances: np.ndarray, threshold: float = SAME_PERSON) -> list[tuple[int, int, float]]:
    """Pairs (i < j) closer than ``threshold``, closest first."""
    pairs = [
        (i, j, float(distances[i, j])) for i, j in combinations(range(len(distances)), 2) if distances[i, j] < threshold
    ]
    return sorted(pairs, key=lambda pair: pair[2])
