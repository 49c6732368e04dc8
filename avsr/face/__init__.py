"""Face detection and 68-point landmarks."""

from avsr.face.dlib_landmarker import DlibLandmarker, shape_predictor_path

__all__ = ["DlibLandmarker", "shape_predictor_path"]
