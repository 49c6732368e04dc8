"""Mouth crops as LRS2/LRS3 preprocessing makes them: align each frame to a mean face, cut a square.

This follows auto_avsr (mpc001/auto_avsr, commit 182b628,
``preparation/detectors/retinaface/video_process.py``):

* landmarks are gap-filled and smoothed over ``window`` frames (:mod:`avsr.face.temporal`);
* per frame, a similarity transform (rotation, uniform scale, translation) is fitted with
  ``cv2.estimateAffinePartial2D(..., method=cv2.LMEDS)`` from the smoothed landmarks at the stable
  points 28, 33 (nose bridge and tip), 36, 39, 42, 45 (eye corners), 48, 54 (mouth corners) to the
  same points of the 256 x 256 mean face; the reference is shifted by (reference_size -
  canvas_size) / 2, which is zero for the default 256 / 256 (``affine_transform`` and
  ``get_stable_reference``, lines 147-193);
* the frame is converted to grayscale, then warped with bilinear interpolation (line 161, 205-212);
* the crop is crop_size x crop_size, centred on the mean of the transformed mouth landmarks 48-67,
  with corners rounded to whole pixels (``cut_patch``, lines 38-52).

Where we differ, on purpose: auto_avsr warps the whole 256 x 256 aligned frame and slices it; we
fold the slice into the transform and warp straight into the crop (same pixels up to the last
bit of interpolation rounding, and much less work). auto_avsr clips a box that leaves the aligned
frame (a smaller crop, which breaks stacking) and fills the frame outside the source image with
black; our crop is always full size, because pixels beyond the 256 x 256 frame are taken from the
source image as well, and only pixels beyond the source image are filled by ``border`` (default:
repeat the edge pixels rather than draw a black edge that the model could latch onto). Like
auto_avsr, a crop centre more than crop_size / 2 + 5 px from the aligned frame's centre means the
landmarks are wrong, and the video is refused (:class:`FaceAlignmentError`).

AV-HuBERT (facebookresearch/av_hubert, ``avhubert/preparation/align_mouth.py``) makes its crops
from the same mean face another way; ``MouthCropConfig.for_style("avhubert")`` reproduces it:
five stable points (33 nose tip, 36, 39, 42, 45 eye corners); a least-squares similarity fit
(skimage's ``estimate_transform("similarity")``, :func:`fit_similarity`) instead of LMEDS; smoothing
over the frame and the 11 ahead of it (:func:`~avsr.face.temporal.smooth_landmarks_ahead`), with
the crop centred on the frame's own, unsmoothed mouth; the box shifted to stay inside the 256 x 256
frame (its out-of-frame check tests the shifted centre, so it never refuses one: we do the same);
black beyond the source image. Left as is: AV-HuBERT warps the colour frame and stores the crops
as lossy video before turning them grey, and skimage truncates the warped values to uint8 where
OpenCV rounds (half a grey level on average).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from avsr.face.errors import FaceAlignmentError
from avsr.face.temporal import LandmarkSequence, fill_with_mask, smooth_landmarks, smooth_landmarks_ahead

MOUTH = slice(48, 68)
STABLE_POINTS = (28, 33, 36, 39, 42, 45, 48, 54)  # auto_avsr's: nose bridge and tip, eye corners, mouth corners
AVHUBERT_STABLE_POINTS = (33, 36, 39, 42, 45)  # nose tip, eye corners
BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}
SMOOTHINGS = ("centred", "ahead")
FITS = ("lmeds", "least_squares")
MEAN_FACE_FILE = "20words_mean_face.npy"
#: How each anchor's preprocessing differs from the defaults (auto_avsr's).
STYLES: dict[str, dict] = {
    "auto_avsr": {},
    "avhubert": {
        "stable_points": AVHUBERT_STABLE_POINTS,
        "fit": "least_squares",
        "smoothing": "ahead",
        "clamp_to_canvas": True,
        "centre_tolerance": None,
        "border": "constant",
    },
}


def default_mean_face() -> Path:
    """The shipped reference: auto_avsr's 20words_mean_face.npy (see avsr/face/data/README.md)."""
    return Path(str(resources.files("avsr.face") / "data" / MEAN_FACE_FILE))


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity transform (rotation, uniform scale, translation) mapping
    ``source`` (N, 2) points onto ``target`` (N, 2); the same optimum as Umeyama's method, which
    skimage's ``estimate_transform("similarity")`` uses. Written with complex numbers: the best
    z -> a z + b has a = <s - mean s, t - mean t> / |s - mean s|^2."""
    src = np.asarray(source, dtype=np.float64) @ (1.0, 1j)
    dst = np.asarray(target, dtype=np.float64) @ (1.0, 1j)
    src_centred, dst_centred = src - src.mean(), dst - dst.mean()
    spread = float(np.vdot(src_centred, src_centred).real)
    if spread <= 1e-12:
        raise FaceAlignmentError("the stable points coincide: cannot fit a similarity transform")
    a = np.vdot(src_centred, dst_centred) / spread
    b = dst.mean() - a * src.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


@dataclass(frozen=True)
class MouthCropConfig:
    """How mouth crops are made (defaults: auto_avsr's; ``crop_size=120`` for the seed paper's)."""

    crop_size: int = 96
    window: int = 12  # frames in the landmark smoothing window (0 or 1: no smoothing)
    mean_face: Path = field(default_factory=default_mean_face)
    stable_points: tuple[int, ...] = STABLE_POINTS
    reference_size: int = 256  # the mean face's frame
    canvas_size: int = 256  # the aligned frame the crop is centred in (auto_avsr's target_size)
    grayscale: bool = True
    border: str = "replicate"  # fill beyond the source image: replicate, constant (black), reflect
    centre_tolerance: float | None = 5.0  # px beyond crop_size / 2 the crop centre may stray; None: no check
    smoothing: str = "centred"  # centred (auto_avsr) or ahead (AV-HuBERT; the crop centre then uses raw landmarks)
    fit: str = "lmeds"  # lmeds (cv2's robust fit, auto_avsr) or least_squares (AV-HuBERT)
    clamp_to_canvas: bool = False  # shift the crop to stay inside the canvas (AV-HuBERT)

    def __post_init__(self) -> None:
        if self.crop_size < 8:
            raise ValueError(f"crop_size must be at least 8, not {self.crop_size}")
        if self.border not in BORDERS:
            raise ValueError(f"border must be one of {', '.join(BORDERS)}, not {self.border!r}")
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS)}, not {self.smoothing!r}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, not {self.fit!r}")
        if len(self.stable_points) < 2:
            raise ValueError("at least two stable points are needed to fit a similarity transform")

    @classmethod
    def for_style(cls, style: str, **overrides) -> MouthCropConfig:
        """The crops an anchor's models were trained on: ``auto_avsr`` (the defaults) or ``avhubert``."""
        if style not in STYLES:
            raise ValueError(f"unknown mouth-crop style {style!r} (expected one of {', '.join(STYLES)})")
        return cls(**{**STYLES[style], **overrides})

    def to_dict(self) -> dict:
        """Plain values for a model's metadata; the shipped mean face is written by file name."""
        mean_face = MEAN_FACE_FILE if self.mean_face == default_mean_face() else str(self.mean_face)
        return {
            "crop_size": self.crop_size,
            "window": self.window,
            "mean_face": mean_face,
            "stable_points": list(self.stable_points),
            "reference_size": self.reference_size,
            "canvas_size": self.canvas_size,
            "grayscale": self.grayscale,
            "border": self.border,
            "centre_tolerance": self.centre_tolerance,
            "smoothing": self.smoothing,
            "fit": self.fit,
            "clamp_to_canvas": self.clamp_to_canvas,
        }

    @classmethod
    def from_mapping(cls, data: dict) -> MouthCropConfig:
        """Inverse of :meth:`to_dict`; ``style`` picks the base, unknown keys are an error."""
        data = dict(data)
        base = dict(STYLES[data.pop("style")]) if "style" in data and data["style"] in STYLES else {}
        data.pop("style", None)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown mouth-crop settings: {', '.join(sorted(unknown))}")
        if "mean_face" in data:
            data["mean_face"] = default_mean_face() if data["mean_face"] == MEAN_FACE_FILE else Path(data["mean_face"])
        if "stable_points" in data:
            data["stable_points"] = tuple(int(p) for p in data["stable_points"])
        return cls(**{**base, **data})


@dataclass
class MouthCrops:
    """Mouth crops of a video.

    ``crops``: (T, S, S) uint8 grayscale, or (T, S, S, 3) RGB when the config says so.
    ``mouth_points``: (T, 20, 2) float32, each frame's own (unsmoothed) mouth landmarks 48-67 in
    crop pixels. ``transforms``: (T, 2, 3) float64, source frame pixels -> crop pixels.
    ``detected``: (T,) bool, False where the landmarks were interpolated or held.
    ``landmarks``: (T, 68, 2) float64 source-frame landmarks after gap filling, before smoothing.
    """

    crops: np.ndarray
    mouth_points: np.ndarray
    transforms: np.ndarray
    detected: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.crops)


class MouthCropper:
    """Aligns frames to the mean face and cuts the mouth square (see the module docstring)."""

    def __init__(self, config: MouthCropConfig | None = None) -> None:
        self.config = config = config or MouthCropConfig()
        mean_face = np.load(config.mean_face, allow_pickle=False).astype(np.float64)
        if mean_face.shape != (68, 2):
            raise ValueError(f"{config.mean_face}: the mean face must be a (68, 2) array, not {mean_face.shape}")
        shift = (config.reference_size - config.canvas_size) / 2.0
        self.reference = mean_face[list(config.stable_points)] - shift
        self._border = BORDERS[config.border]

    def crop(self, frames: Sequence[np.ndarray] | np.ndarray, landmarks: LandmarkSequence) -> MouthCrops:
        """Crop every frame. ``landmarks``: per frame (68, 2) or None, or (T, 68, 2) with NaN gaps.

        Frames are RGB (H, W, 3) uint8 (grayscale (H, W) also works when ``grayscale`` is set).
        Raises :class:`~avsr.face.NoFaceError` if no frame has landmarks, and
        :class:`FaceAlignmentError` if a frame cannot be aligned.
        """
        if len(landmarks) != len(frames):
            raise ValueError(f"{len(frames)} frames but landmarks for {len(landmarks)}")
        raw, detected = fill_with_mask(landmarks)
        if self.config.smoothing == "ahead":  # AV-HuBERT: fit on smoothed points, centre on the frame's own
            fit_points, centre_points = smooth_landmarks_ahead(raw, self.config.window), raw
        else:
            fit_points = centre_points = smooth_landmarks(raw, self.config.window)
        size = self.config.crop_size
        count = len(frames)
        channels = () if self.config.grayscale else (3,)
        crops = np.empty((count, size, size, *channels), np.uint8)
        transforms = np.empty((count, 2, 3))
        for index in range(count):
            frame = self._prepare(frames[index])
            transform = self.crop_transform(fit_points[index], index, centre_landmarks=centre_points[index])
            transforms[index] = transform
            crops[index] = cv2.warpAffine(
                frame, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=self._border, borderValue=0
            )
        mouth = raw[:, MOUTH].astype(np.float64)
        mouth_points = np.einsum("tij,tpj->tpi", transforms[:, :, :2], mouth) + transforms[:, None, :, 2]
        return MouthCrops(crops, mouth_points.astype(np.float32), transforms, detected, raw)

    def align_transform(self, landmarks: np.ndarray, index: int = 0) -> np.ndarray:
        """(2, 3) similarity transform, frame pixels -> aligned canvas pixels, from (68, 2) landmarks."""
        source = np.asarray(landmarks, dtype=np.float64)[list(self.config.stable_points)]
        if self.config.fit == "least_squares":
            return fit_similarity(source, self.reference)
        transform, _ = cv2.estimateAffinePartial2D(source, self.reference, method=cv2.LMEDS)
        if transform is None or not np.isfinite(transform).all():
            raise FaceAlignmentError(f"frame {index}: cannot fit a similarity transform to the landmarks")
        return transform

    def crop_origin(self, transform: np.ndarray, landmarks: np.ndarray, index: int = 0) -> tuple[int, int]:
        """Top-left corner (x, y) of the crop on the aligned canvas, in whole pixels."""
        points = np.asarray(landmarks, dtype=np.float64)[MOUTH] @ transform[:, :2].T + transform[:, 2]
        centre_x, centre_y = points.mean(axis=0)
        half = self.config.crop_size // 2
        tolerance = self.config.centre_tolerance
        canvas = self.config.canvas_size
        if self.config.clamp_to_canvas:  # AV-HuBERT's cut_patch: keep the box inside the canvas
            if tolerance is not None and (
                min(centre_x, centre_y) < half - tolerance or max(centre_x, centre_y) > canvas - half + tolerance
            ):
                raise FaceAlignmentError(
                    f"frame {index}: the aligned mouth ({centre_x:.0f}, {centre_y:.0f}) lies outside the aligned face"
                )
            centre_x, centre_y = np.clip((centre_x, centre_y), half, canvas - half)
            return int(round(centre_x - half)), int(round(centre_y - half))
        middle = canvas / 2
        if tolerance is not None and (
            abs(centre_x - middle) > half + tolerance or abs(centre_y - middle) > half + tolerance
        ):
            raise FaceAlignmentError(
                f"frame {index}: the aligned mouth centre ({centre_x:.0f}, {centre_y:.0f}) is too far from the"
                f" aligned face's centre ({middle:.0f}, {middle:.0f}); the landmarks look wrong"
            )
        return int(round(centre_x - half)), int(round(centre_y - half))

    def crop_transform(
        self, landmarks: np.ndarray, index: int = 0, centre_landmarks: np.ndarray | None = None
    ) -> np.ndarray:
        """(2, 3) transform, frame pixels -> crop pixels: the alignment (fitted to ``landmarks``)
        followed by the crop's shift (centred on ``centre_landmarks``' mouth, default ``landmarks``)."""
        transform = self.align_transform(landmarks, index)
        x, y = self.crop_origin(transform, landmarks if centre_landmarks is None else centre_landmarks, index)
        transform = transform.copy()
        transform[:, 2] -= (x, y)
        return transform

    def crop_on_canvas(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """auto_avsr's way, for checking the fast path: warp the whole canvas, then slice (clipped).

        ``landmarks`` are the frame's smoothed landmarks.
        """
        canvas = self.config.canvas_size
        transform = self.align_transform(landmarks)
        x, y = self.crop_origin(transform, landmarks)
        aligned = cv2.warpAffine(
            self._prepare(frame),
            transform,
            (canvas, canvas),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        size = self.config.crop_size
        return aligned[max(y, 0) : max(y + size, 0), max(x, 0) : max(x + size, 0)].copy()

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, not {frame.dtype}")
        if self.config.grayscale and frame.ndim == 3:
            return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if not self.config.grayscale and frame.ndim != 3:
            raise ValueError("colour crops need (H, W, 3) RGB frames")
        return frame
