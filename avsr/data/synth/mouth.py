"""One mouth pose on a rigged photograph: lip and jaw landmarks moved, the lower face warped to
follow them with a thin-plate spline, and the cavity, tongue and teeth painted inside the lips.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from avsr.data.synth.rig import FaceRig

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
