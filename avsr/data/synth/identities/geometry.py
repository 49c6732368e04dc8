"""Face geometry: one canonical frame for every photograph, shape edits on the 68 points, and a
thin-plate-spline warp of the whole image that carries the pixels along.

All photographs are first brought to a canonical canvas (a similarity transform putting the eye
centres at fixed points), so that landmarks of different people can be averaged (a morph) and
edited with the same pixel amounts. Shape edits move landmarks; the warp moves the head with them
(the canvas border stays fixed, so the spline spreads each change smoothly over hair and neck).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from avsr.data.synth.mouth import tps_map

CANVAS = 416  # canonical image side (pixels)
EYE_DISTANCE = 70.0  # canonical distance between the eye centres: a face about 150 px wide
EYE_Y = 180.0  # canonical height of the eye centres
GRID_STEP = 4  # the spline is smooth: evaluate it every few pixels and interpolate

JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE = tuple(range(27, 36))
LEFT_EYE = tuple(range(36, 42))  # the image's left (the person's right eye)
RIGHT_EYE = tuple(range(42, 48))
MOUTH = tuple(range(48, 68))
OUTER_LIPS_UPPER = (49, 50, 51, 52, 53)
OUTER_LIPS_LOWER = (55, 56, 57, 58, 59)
JAW_WEIGHTS = {3: 0.3, 4: 0.6, 5: 0.9, 6: 1.0, 7: 0.8, 9: 0.8, 10: 1.0, 11: 0.9, 12: 0.6, 13: 0.3}  # the chin (8) stays


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return landmarks[list(LEFT_EYE)].mean(axis=0), landmarks[list(RIGHT_EYE)].mean(axis=0)


def canonical_transform(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) similarity matrix taking a photograph's eye centres to the canonical ones."""
    left, right = eye_centres(landmarks)
    source = np.array([left, right])
    target = np.array([[CANVAS / 2 - EYE_DISTANCE / 2, EYE_Y], [CANVAS / 2 + EYE_DISTANCE / 2, EYE_Y]])
    # Two point pairs fix a similarity exactly: solve for scale*rotation as a complex number.
    src = source[:, 0] + 1j * source[:, 1]
    dst = target[:, 0] + 1j * target[:, 1]
    a = (dst[1] - dst[0]) / (src[1] - src[0])
    b = dst[0] - a * src[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def to_canvas(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photograph and its landmarks in the canonical frame (CANVAS x CANVAS); the border reflects."""
    matrix = canonical_transform(landmarks)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.7:  # shrinking: low-pass first, as an area resize would
        image = cv2.GaussianBlur(image, (0, 0), 0.45 / scale)
    canvas = cv2.warpAffine(image, matrix, (CANVAS, CANVAS), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return canvas, landmarks @ matrix[:, :2].T + matrix[:, 2]


def _anchors(size: int, count: int = 9) -> np.ndarray:
    steps = np.linspace(0, size - 1, count)
    edges = (
        [(t, 0) for t in steps]
        + [(t, size - 1) for t in steps]
        + [(0, t) for t in steps]
        + [(size - 1, t) for t in steps]
    )
    return np.unique(np.array(edges, dtype=np.float64), axis=0)


def tps_backward_map(targets: np.ndarray, sources: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution backward maps (size, size) float32 of the thin-plate spline taking each
    target point to its source point; the canvas border is pinned."""
    anchors = _anchors(size)
    scale = size  # work in canvas units: keeps the system well conditioned
    coarse = np.arange(0, size + GRID_STEP, GRID_STEP, dtype=np.float64)
    gx, gy = np.meshgrid(coarse, coarse)
    mapped_x, mapped_y = tps_map(
        np.vstack([targets, anchors]) / scale,
        np.vstack([sources, anchors]) / scale,
        gx / scale,
        gy / scale,
        regularisation=5e-9,
    )
    mapped = np.stack([mapped_x.ravel(), mapped_y.ravel()], axis=1) * scale
    maps = []
    for axis in range(2):
        grid = mapped[:, axis].reshape(gx.shape).astype(np.float32)
        full = cv2.resize(grid, (grid.shape[1] * GRID_STEP, grid.shape[0] * GRID_STEP), interpolation=cv2.INTER_LINEAR)
        # resize aligns pixel centres, not grid nodes: pixel i sits at coarse position i / GRID_STEP
        shift = np.float32([[1, 0, GRID_STEP / 2 - 0.5], [0, 1, GRID_STEP / 2 - 0.5]])
        full = cv2.warpAffine(
            full,
            shift,
            (full.shape[1], full.shape[0]),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        maps.append(full[:size, :size])
    return maps[0], maps[1]


def warp_to(image: np.ndarray, landmarks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``image`` (canvas) warped so that its ``landmarks`` land on ``target``; same size."""
    size = image.shape[0]
    map_x, map_y = tps_backward_map(target, landmarks, size)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class ShapeEdit:
    """How far a face departs from its sources' shape; each field about -1..1 (0: unchanged).

    Amounts are in canonical pixels through fixed gains, so the same edit does the same to any face.
    """

    face_width: float = 0.0  # whole head wider (+) or narrower (-), up to about 16%
    face_length: float = 0.0  # nose-to-chin longer (+) or shorter (-), up to about 14%
    jaw: float = 0.0  # square, wide jaw (+) or narrow, pointed (-)
    chin: float = 0.0  # chin lower (+) or higher (-)
    nose_width: float = 0.0
    nose_length: float = 0.0
    lip_thickness: float = 0.0
    lip_width: float = 0.0
    eye_distance: float = 0.0
    eye_size: float = 0.0
    brow_height: float = 0.0

    def is_identity(self) -> bool:
        return all(getattr(self, f.name) == 0 for f in fields(self))

    @classmethod
    def sample(cls, rng: np.random.Generator, strength: float = 1.0) -> ShapeEdit:
        """Every field away from zero: a random sign times a size uniform in [0.3, 1.3] * strength.

        Faces differ from each other most where they differ in every respect at once: drawing
        near the corners of the edit space keeps two samples far apart more often than drawing
        uniformly inside it.
        """
        values = (
            rng.choice([-1.0, 1.0], size=len(fields(cls))) * rng.uniform(0.3, 1.3, size=len(fields(cls))) * strength
        )
        return cls(**{f.name: float(round(v, 3)) for f, v in zip(fields(cls), values)})

    def apply(self, landmarks: np.ndarray) -> np.ndarray:
        """The edited landmarks (68, 2) of a face in the canonical frame."""
        points = landmarks.astype(np.float64).copy()
        unit = EYE_DISTANCE
        mid_x = points[list(NOSE)][:, 0].mean()
        eye_y = np.mean([c[1] for c in eye_centres(points)])

        def spread_x(indices, centre: float, factor: float) -> None:
            idx = list(indices)
            points[idx, 0] = centre + (points[idx, 0] - centre) * factor

        # Face length: everything below the eyes stretched away from the eye line.
        below = points[:, 1] > eye_y
        points[below, 1] = eye_y + (points[below, 1] - eye_y) * (1 + 0.14 * self.face_length)
        # Face width: the jaw line (and with it the head) away from the mid-line.
        spread_x(JAW, mid_x, 1 + 0.16 * self.face_width)
        # Jaw: the lower jaw (around the chin) wider or narrower, the more the lower the point.
        for index, weight in JAW_WEIGHTS.items():
            points[index, 0] = mid_x + (points[index, 0] - mid_x) * (1 + 0.25 * self.jaw * weight)
        chin_drop = 0.18 * unit * self.chin
        for index, weight in {6: 0.4, 7: 0.8, 8: 1.0, 9: 0.8, 10: 0.4}.items():
            points[index, 1] += chin_drop * weight
        # Nose.
        spread_x((31, 32, 33, 34, 35), points[33, 0], 1 + 0.3 * self.nose_width)
        length = 0.14 * unit * self.nose_length
        for index, weight in {28: 0.25, 29: 0.5, 30: 0.8, 31: 1.0, 32: 1.0, 33: 1.0, 34: 1.0, 35: 1.0}.items():
            points[index, 1] += length * weight
        # Lips: thickness away from the lip line, width about the mouth centre.
        mouth_centre = points[list(MOUTH)].mean(axis=0)
        line_y = points[list(range(60, 68))][:, 1].mean()
        for index in OUTER_LIPS_UPPER + OUTER_LIPS_LOWER:
            points[index, 1] = line_y + (points[index, 1] - line_y) * (1 + 0.45 * self.lip_thickness)
        spread_x(MOUTH, mouth_centre[0], 1 + 0.18 * self.lip_width)
        # Eyes: distance between them, size about their centres; brows follow the eyes.
        shift = 0.09 * unit * self.eye_distance
        for eye, brow, side in ((LEFT_EYE, (17, 18, 19, 20, 21), -1), (RIGHT_EYE, (22, 23, 24, 25, 26), 1)):
            centre = points[list(eye)].mean(axis=0)
            points[list(eye)] = centre + (points[list(eye)] - centre) * (1 + 0.25 * self.eye_size)
            points[list(eye), 0] += side * shift
            points[list(brow), 0] += side * shift * 0.7
        points[list(BROWS), 1] -= 0.12 * unit * self.brow_height
        return points
