"""A talking face from one real photograph: lips and jaw follow a mouth track, frame by frame.

The photograph is scikit-image's astronaut (a real frontal face that ships with a dependency).
dlib's 68 landmarks, found once per process, rig it: a pose (jaw opening, lip spread, teeth on
the lower lip) moves the lip and jaw landmarks, a thin-plate spline through the moved and the
fixed landmarks warps the lower face, and the mouth cavity and teeth are painted inside the new
inner-lip contour. Each speaker then gets its own framing, head motion, colour, mirror and
background, so that the face detector sees a different person-like image per speaker.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from avsr.data.synth.visemes import OPEN, SPREAD, TEETH

BACKGROUNDS = ("original", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "gradient")

# 68-point layout (iBUG 300-W).
JAW_MOVING = {4: 0.1, 5: 0.3, 6: 0.55, 7: 0.8, 8: 0.9, 9: 0.8, 10: 0.55, 11: 0.3, 12: 0.1}
UPPER_OUTER = (49, 50, 51, 52, 53)
LOWER_OUTER = (55, 56, 57, 58, 59)
UPPER_INNER = (61, 62, 63)
LOWER_INNER = (65, 66, 67)  # 65 under 63, 66 under 62, 67 under 61
CORNERS = (48, 54, 60, 64)
FIXED = tuple(range(0, 4)) + tuple(range(13, 48))  # jaw ends, brows, nose, eyes
INNER_CONTOUR = tuple(range(60, 68))
MIN_LIP_GAP = 1.0  # photo pixels
# (low, high, step) of open, spread and teeth: the nodes where the warp is solved exactly.
POSE_GRID = ((0.0, 1.0, 0.05), (-1.0, 1.0, 0.125), (0.0, 1.0, 0.125))


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


@lru_cache(maxsize=1)
def astronaut_rig() -> FaceRig:
    """Rig the astronaut photograph (cached: dlib's predictor takes a second to load)."""
    import skimage.data

    from avsr.face import DlibLandmarker

    image = skimage.data.astronaut()
    landmarks = DlibLandmarker(upsample=1)(image)
    if landmarks is None:
        raise RuntimeError("dlib found no face in skimage's astronaut photograph")
    return FaceRig(image, landmarks.astype(np.float64), _person_mask(image.shape[:2], landmarks))


def _person_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Head (with hair) as an ellipse, neck and shoulders as a widening band, blurred edge."""
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


def posed_landmarks(rig: FaceRig, open_: float, spread: float, teeth: float) -> np.ndarray:
    """Where the lip and jaw landmarks go for one mouth pose (photo pixels).

    The rest pose closes the lips onto their mid-line (the photograph smiles with parted lips);
    opening drops the lower lip and the jaw, raises the upper lip a little; spread moves the corners
    out (spread) or in (rounded); teeth lifts the lower lip up under the upper teeth.
    """
    points = rig.landmarks.copy()
    width = rig.mouth_width
    for upper, lower in zip(UPPER_INNER, reversed(LOWER_INNER)):
        half_gap = (points[lower, 1] - points[upper, 1]) / 2
        points[upper, 1] += half_gap
        points[lower, 1] -= half_gap
    rest_shift = np.mean([rig.landmarks[l, 1] - rig.landmarks[u, 1] for u, l in zip(UPPER_INNER, reversed(LOWER_INNER))]) / 2
    points[list(UPPER_OUTER), 1] += rest_shift
    points[list(LOWER_OUTER), 1] -= rest_shift

    gap = open_ * 0.6 * width
    lower_weights = {55: 0.55, 56: 0.85, 57: 1.0, 58: 0.85, 59: 0.55, 65: 0.85, 66: 1.0, 67: 0.85}
    for index, weight in lower_weights.items():
        points[index, 1] += 0.85 * gap * weight
    for index in UPPER_OUTER + UPPER_INNER:
        points[index, 1] -= 0.15 * gap * (1.0 if index in (50, 51, 52, 61, 62, 63) else 0.6)
    for index, weight in JAW_MOVING.items():
        points[index, 1] += 0.85 * gap * weight
    mouth_centre_x = rig.landmarks[48:68, 0].mean()
    for index in CORNERS:
        side = np.sign(points[index, 0] - mouth_centre_x)
        points[index, 0] += side * (0.12 * spread * width - 0.06 * gap)
        points[index, 1] += 0.3 * gap
    for index in (49, 53, 55, 59):
        side = np.sign(points[index, 0] - mouth_centre_x)
        points[index, 0] += side * 0.06 * spread * width

    # Labiodentals (f, v): the upper lip rises to bare the upper teeth, which rest on the lower lip.
    lift = teeth * 0.1 * width
    for index in UPPER_OUTER + UPPER_INNER:
        points[index, 1] -= lift * (1.0 if index in (50, 51, 52, 61, 62, 63) else 0.6)
    # Pressed lips stay a pixel apart: coincident spline points with different sources make the
    # warp ring like a struck bell.
    for upper, lower in zip(UPPER_INNER, reversed(LOWER_INNER)):
        shortfall = MIN_LIP_GAP - (points[lower, 1] - points[upper, 1])
        if shortfall > 0:
            points[upper, 1] -= shortfall / 2
            points[lower, 1] += shortfall / 2
    return points


def _tps_map(targets: np.ndarray, sources: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate spline through (target -> source) pairs, evaluated on a grid: a backward map."""
    count = len(targets)
    diff = targets[:, None, :] - targets[None, :, :]
    r2 = (diff**2).sum(-1)
    kernel = np.where(r2 > 0, r2 * np.log(r2 + 1e-12), 0.0) / 2
    affine = np.hstack([np.ones((count, 1)), targets])
    system = np.zeros((count + 3, count + 3))
    system[:count, :count] = kernel + 1e-6 * np.eye(count)
    system[:count, count:] = affine
    system[count:, :count] = affine.T
    rhs = np.zeros((count + 3, 2))
    rhs[:count] = sources
    coefficients = np.linalg.solve(system, rhs)
    query = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    q2 = ((query[:, None, :] - targets[None, :, :]) ** 2).sum(-1)
    basis = np.where(q2 > 0, q2 * np.log(q2 + 1e-12), 0.0) / 2
    mapped = basis @ coefficients[:count] + np.hstack([np.ones((len(query), 1)), query]) @ coefficients[count:]
    return mapped[:, 0].reshape(grid_x.shape), mapped[:, 1].reshape(grid_x.shape)


class MouthRenderer:
    """Renders the rig's photograph with the mouth in a given pose (photo resolution)."""

    GRID_STEP = 4  # the spline is smooth: evaluate it every few pixels and interpolate the map

    def __init__(self, rig: FaceRig) -> None:
        self.rig = rig
        lm = rig.landmarks
        width = rig.mouth_width
        height, image_width = rig.image.shape[:2]
        x0 = int(max(0, lm[2, 0] - 0.2 * width))
        x1 = int(min(image_width, lm[14, 0] + 0.2 * width))
        y0 = int(max(0, lm[29, 1]))
        y1 = int(min(height, lm[8, 1] + 0.9 * width))
        self.box = (x0, y0, x1, y1)
        border = []
        for t in np.linspace(0, 1, 9):
            border += [(x0 + t * (x1 - x0), y0), (x0 + t * (x1 - x0), y1 - 1), (x0, y0 + t * (y1 - y0)), (x1 - 1, y0 + t * (y1 - y0))]
        self._anchors = np.unique(np.array(border), axis=0)
        step = self.GRID_STEP
        gx = np.arange(x0, x1 + step, step, dtype=np.float64)
        gy = np.arange(y0, y1 + step, step, dtype=np.float64)
        self._grid_x, self._grid_y = np.meshgrid(gx, gy)
        self._node_maps: dict[tuple[int, int, int], np.ndarray] = {}

    def _exact_map(self, open_: float, spread: float, teeth: float) -> np.ndarray:
        """(2, gh, gw) coarse backward map (photo coordinates) for one pose."""
        rig = self.rig
        posed = posed_landmarks(rig, open_, spread, teeth)
        moving = [i for i in range(68) if i not in FIXED]
        targets = np.vstack([posed[list(FIXED)], posed[moving], self._anchors])
        sources = np.vstack([rig.landmarks[list(FIXED)], rig.landmarks[moving], self._anchors])
        return np.stack(_tps_map(targets, sources, self._grid_x, self._grid_y)).astype(np.float32)

    def _node_map(self, node: tuple[int, int, int]) -> np.ndarray:
        if node not in self._node_maps:
            pose = [low + index * step for index, (low, _, step) in zip(node, POSE_GRID)]
            self._node_maps[node] = self._exact_map(*pose)
        return self._node_maps[node]

    def coarse_map(self, open_: float, spread: float, teeth: float) -> np.ndarray:
        """The coarse map, interpolated between maps solved at the nodes of a pose grid.

        Solving the spline costs more than the rest of a frame; poses repeat across frames and
        utterances, and the map changes smoothly with the pose (sub-pixel error at these steps).
        """
        corners = []
        for value, (low, high, step) in zip((open_, spread, teeth), POSE_GRID):
            position = (min(max(value, low), high) - low) / step
            below = min(int(position), round((high - low) / step) - 1)
            corners.append(((below, 1.0 - (position - below)), (below + 1, position - below)))
        result = np.zeros_like(self._node_map((0, 0, 0)))
        for (i, wi), (j, wj), (k, wk) in itertools.product(*corners):
            weight = wi * wj * wk
            if weight > 0:
                result += weight * self._node_map((i, j, k))
        return result

    def render(self, open_: float, spread: float, teeth: float) -> tuple[np.ndarray, np.ndarray]:
        """The posed photograph and its posed landmarks."""
        rig = self.rig
        posed = posed_landmarks(rig, open_, spread, teeth)
        map_x, map_y = self.coarse_map(open_, spread, teeth)
        x0, y0, x1, y1 = self.box
        size = (x1 - x0, y1 - y0)
        full = (map_x.shape[1] * self.GRID_STEP, map_x.shape[0] * self.GRID_STEP)
        offset = self.GRID_STEP / 2 - 0.5  # resize aligns pixel centres, not grid nodes
        full_x = _shift(cv2.resize(map_x, full, interpolation=cv2.INTER_LINEAR), offset)[: size[1], : size[0]]
        full_y = _shift(cv2.resize(map_y, full, interpolation=cv2.INTER_LINEAR), offset)[: size[1], : size[0]]
        image = rig.image.copy()
        image[y0:y1, x0:x1] = cv2.remap(rig.image, full_x, full_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        _paint_mouth(image, posed, rig.mouth_width, teeth)
        return image, posed


def _shift(values: np.ndarray, offset: float) -> np.ndarray:
    """Resample a map so that pixel i holds the value at coarse position i + offset (sub-pixel)."""
    matrix = np.float32([[1, 0, offset], [0, 1, offset]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # dst(x) = src(x + offset)
    return cv2.warpAffine(values, matrix, (values.shape[1], values.shape[0]), flags=flags, borderMode=cv2.BORDER_REPLICATE)


CAVITY = np.array([45, 12, 18], np.float32)
TONGUE = np.array([150, 62, 70], np.float32)
TOOTH = np.array([226, 220, 204], np.float32)
SUPERSAMPLE = 4


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray, blur: float = 0.8) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * SUPERSAMPLE).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), blur)


def _paint_mouth(image: np.ndarray, posed: np.ndarray, mouth_width: float, teeth: float) -> None:
    """Dark cavity with tongue and upper/lower teeth inside the inner lips; teeth over a tucked lip."""
    inner = posed[list(INNER_CONTOUR)]
    x0, y0 = np.floor(inner.min(axis=0) - mouth_width * 0.2).astype(int)
    x1, y1 = np.ceil(inner.max(axis=0) + mouth_width * 0.25).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    patch = image[y0:y1, x0:x1].astype(np.float32)
    local = inner - np.array([x0, y0])
    shape = patch.shape[:2]
    cavity = _polygon_mask(shape, local)
    upper_line = local[[0, 1, 2, 3, 4]]  # 60..64, left to right along the upper inner lip
    lower_line = local[[4, 5, 6, 7, 0]]  # 64, 65, 66, 67, 60 along the lower inner lip
    gap = float(np.mean(lower_line[1:4, 1]) - np.mean(upper_line[1:4, 1]))
    layers = [(cavity, CAVITY)]
    if gap > 0.5:
        tongue_top = lower_line.copy()
        tongue_top[:, 1] -= 0.35 * gap
        layers.append((_polygon_mask(shape, np.vstack([lower_line, tongue_top[::-1]])) * cavity, TONGUE))
        # Upper teeth show below the upper lip; in a labiodental they fill the gap down to the lip.
        upper_teeth = max(min(0.35 * gap, 0.11 * mouth_width), teeth * gap)
        band = np.vstack([upper_line, (upper_line + [0, upper_teeth])[::-1]])
        layers.append((_polygon_mask(shape, band) * cavity, TOOTH))
        lower_teeth = min(0.15 * gap, 0.05 * mouth_width)
        band = np.vstack([lower_line, (lower_line - [0, lower_teeth])[::-1]])
        layers.append((_polygon_mask(shape, band) * cavity * 0.85, TOOTH))
    for mask, colour in layers:
        patch += mask[..., None] * (colour - patch)
    image[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Appearance:
    """How one synthetic speaker looks and moves; sampled once per speaker."""

    face_width: float = 0.55  # fraction of the frame width the face spans
    centre: tuple[float, float] = (0.5, 0.5)  # face centre, fractions of the frame
    mirror: bool = False
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel colour gains (skin, light)
    gamma: float = 1.0
    background: str = "original"
    background_seed: int = 0
    motion: float = 1.0  # head motion amplitude scale (1: about 2 degrees, 2% of the frame)
    motion_seed: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Appearance:
        return cls(
            face_width=float(rng.uniform(0.46, 0.62)),
            centre=(float(rng.uniform(0.45, 0.55)), float(rng.uniform(0.46, 0.56))),
            mirror=bool(rng.integers(2)),
            gains=tuple(float(g) for g in rng.uniform(0.82, 1.15, size=3)),
            gamma=float(rng.uniform(0.8, 1.25)),
            background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
            background_seed=int(rng.integers(2**31)),
            motion=float(rng.uniform(0.3, 1.2)),
            motion_seed=int(rng.integers(2**31)),
        )


def _background(name: str, size: int, seed: int) -> np.ndarray | None:
    """A blurred scene or gradient behind the speaker (None keeps the photograph's own)."""
    if name == "original":
        return None
    rng = np.random.default_rng(seed)
    if name == "gradient":
        top, bottom = rng.uniform(40, 220, size=(2, 3))
        ramp = np.linspace(0, 1, size)[:, None, None]
        return np.broadcast_to(top + ramp * (bottom - top), (size, size, 3)).astype(np.float32)
    import skimage.data

    scene = getattr(skimage.data, name)()
    side = int(min(scene.shape[:2]) * rng.uniform(0.5, 1.0))
    y = int(rng.integers(scene.shape[0] - side + 1))
    x = int(rng.integers(scene.shape[1] - side + 1))
    crop = cv2.resize(scene[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(crop.astype(np.float32), (0, 0), size / 60)


class TalkingFace:
    """Renders a speaker's video frames from a mouth track of shape (T, 3): open, spread, teeth."""

    def __init__(self, size: int = 160, rig: FaceRig | None = None) -> None:
        self.size = size
        self.rig = rig or astronaut_rig()
        self.mouth = MouthRenderer(self.rig)

    def frame_transforms(self, appearance: Appearance, num_frames: int, fps: float) -> np.ndarray:
        """(T, 2, 3) photo->frame affine matrices: framing plus slow, smooth head motion."""
        rng = np.random.default_rng(appearance.motion_seed)
        times = np.arange(num_frames) / fps
        frequencies = rng.uniform(0.15, 0.8, size=(4, 2))
        phases = rng.uniform(0, 2 * np.pi, size=(4, 2))
        wave = np.sin(2 * np.pi * frequencies[None, :, :] * times[:, None, None] + phases[None]).sum(-1) / 2
        amplitude = appearance.motion
        angle = np.deg2rad(2.0 * amplitude * wave[:, 0])
        shift_x = 0.02 * self.size * amplitude * wave[:, 1]
        shift_y = 0.02 * self.size * amplitude * wave[:, 2]
        zoom = 1.0 + 0.015 * amplitude * wave[:, 3]
        scale = appearance.face_width * self.size / self.rig.face_width * zoom
        centre = self.rig.face_centre
        flip = -1.0 if appearance.mirror else 1.0
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        matrices = np.zeros((num_frames, 2, 3))
        matrices[:, 0, 0] = flip * cos
        matrices[:, 0, 1] = -sin
        matrices[:, 1, 0] = flip * sin
        matrices[:, 1, 1] = cos
        out_x = appearance.centre[0] * self.size + shift_x
        out_y = appearance.centre[1] * self.size + shift_y
        matrices[:, 0, 2] = out_x - (matrices[:, 0, 0] * centre[0] + matrices[:, 0, 1] * centre[1])
        matrices[:, 1, 2] = out_y - (matrices[:, 1, 0] * centre[0] + matrices[:, 1, 1] * centre[1])
        return matrices

    def render(self, track: np.ndarray, appearance: Appearance, fps: float = 25.0) -> np.ndarray:
        """Frames (T, size, size, 3) uint8 RGB for a mouth track (T, 3)."""
        size = self.size
        matrices = self.frame_transforms(appearance, len(track), fps)
        background = _background(appearance.background, size, appearance.background_seed)
        lut = self._colour_lut(appearance)
        frames = np.empty((len(track), size, size, 3), np.uint8)
        for index, pose in enumerate(track):
            photo, _ = self.mouth.render(float(pose[OPEN]), float(pose[SPREAD]), float(pose[TEETH]))
            frame = cv2.warpAffine(photo, matrices[index], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            frame = cv2.LUT(frame, lut)
            if background is not None:
                alpha = cv2.warpAffine(self.rig.person_mask, matrices[index], (size, size), flags=cv2.INTER_LINEAR)[..., None]
                frame = (alpha * frame + (1 - alpha) * background).astype(np.uint8)
            frames[index] = frame
        return frames

    def posed_landmarks(self, track: np.ndarray, appearance: Appearance, fps: float = 25.0) -> np.ndarray:
        """(T, 68, 2): where each rendered frame's landmarks truly are (frame pixels)."""
        matrices = self.frame_transforms(appearance, len(track), fps)
        out = np.empty((len(track), 68, 2))
        for index, pose in enumerate(track):
            points = posed_landmarks(self.rig, float(pose[OPEN]), float(pose[SPREAD]), float(pose[TEETH]))
            out[index] = points @ matrices[index, :, :2].T + matrices[index, :, 2]
        return out

    @staticmethod
    def _colour_lut(appearance: Appearance) -> np.ndarray:
        levels = np.arange(256, dtype=np.float64) / 255.0
        curves = [np.clip(gain * levels**appearance.gamma, 0, 1) * 255 for gain in appearance.gains]
        return np.stack(curves, axis=-1).astype(np.uint8).reshape(256, 1, 3)
