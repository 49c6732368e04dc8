"""One mouth pose on a rigged photograph: lip and jaw landmarks moved, the lower face warped to
follow them with a thin-plate spline, and the cavity, tongue and teeth painted inside the lips.

Everything is taken from the photograph itself: the moves scale with the person's mouth width
and lip thickness, and the mouth's colours (``MouthPalette``) come from its lips, skin, eye
whites and white balance, so every identity gets its own mouth in its own light.
"""

from __future__ import annotations

import colorsys
import itertools
from dataclasses import dataclass

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
UPPER_LINE = (60, 61, 62, 63, 64)  # the inner lip lines, corner to corner
LOWER_LINE = (60, 67, 66, 65, 64)
LOWER_INNER_DROP = {65: 0.95, 66: 1.0, 67: 0.95}  # share of the lower lip's drop at each inner point
MIN_LIP_GAP = 1.0  # photo pixels
# (low, high, step) of open, spread and teeth: the nodes where the warp is solved exactly.
POSE_GRID = ((0.0, 1.0, 0.05), (-1.0, 1.0, 0.125), (0.0, 1.0, 0.125))


def lip_thickness(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper (49..53) and lower (55..59) lip thickness at each outer point (photo pixels).

    The vertical distance from the outer lip point to the inner lip line at the same x: each
    person's own lips, which the pose moves scale with (at least one pixel).
    """
    upper = _line_y(landmarks, UPPER_LINE, landmarks[list(UPPER_OUTER), 0]) - landmarks[list(UPPER_OUTER), 1]
    lower = landmarks[list(LOWER_OUTER), 1] - _line_y(landmarks, LOWER_LINE, landmarks[list(LOWER_OUTER), 0])
    return np.maximum(upper, 1.0), np.maximum(lower, 1.0)


def _line_y(points: np.ndarray, line: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """y of the polyline through ``points[line]`` at each x (held flat beyond its ends)."""
    xs, ys = points[list(line), 0], points[list(line), 1]
    order = np.argsort(xs, kind="stable")
    return np.interp(x, xs[order], ys[order])


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the eyes' centres (pixels): the face's size, whatever its shape."""
    return float(np.linalg.norm(landmarks[36:42].mean(axis=0) - landmarks[42:48].mean(axis=0)))


def jaw_scale(landmarks: np.ndarray) -> float:
    """How far the jaw moves (pixels) at full opening, over 0.6: an average mouth's width (1.05
    eye distances). The face's size, not the person's mouth: a narrow mouth drops its jaw as far
    as a wide one (scaled by the mouth, a narrow one barely opened)."""
    return 1.05 * eye_distance(landmarks)


def posed_landmarks(rig: FaceRig, open_: float, spread: float, teeth: float) -> np.ndarray:
    """Where the lip and jaw landmarks go for one mouth pose (photo pixels).

    The rest pose closes the lips onto their mid-line (many photographs smile with parted lips);
    opening drops the lower lip and the jaw, raises the upper lip a little; spread moves the corners
    out (spread) or in (rounded); teeth lifts the upper lip to bare the upper teeth and rolls the
    lower lip in under them. Horizontal moves scale with the mouth's width, vertical ones with the
    face (``jaw_scale``); the lips keep the
    person's own thickness, thinned by stretching (open, spread, tucked) and thickened by rounding.
    """
    rest = rig.landmarks
    points = rest.copy()
    width = rig.mouth_width
    upper_thick, lower_thick = lip_thickness(rest)
    for upper, lower in zip(UPPER_INNER, reversed(LOWER_INNER)):
        middle = (points[upper, 1] + points[lower, 1]) / 2
        points[upper, 1] = points[lower, 1] = middle

    scale = jaw_scale(rest)
    gap = open_ * 0.6 * scale
    for index, weight in LOWER_INNER_DROP.items():
        points[index, 1] += 0.85 * gap * weight
    for index in UPPER_INNER:
        points[index, 1] -= 0.15 * gap
    for index, weight in JAW_MOVING.items():
        points[index, 1] += 0.85 * gap * weight
    mouth_centre_x = rest[48:68, 0].mean()
    for index in CORNERS:
        side = np.sign(points[index, 0] - mouth_centre_x)
        points[index, 0] += side * (0.12 * spread * width - 0.06 * gap)
        points[index, 1] += 0.3 * gap
    for index in (49, 53, 55, 59):
        side = np.sign(points[index, 0] - mouth_centre_x)
        points[index, 0] += side * 0.06 * spread * width
    # Labiodentals (f, v): the upper lip rises to bare the upper teeth, which rest on the lower lip.
    lift = teeth * (0.05 * scale + 0.5 * float(np.mean(upper_thick)))
    points[list(UPPER_INNER), 1] -= lift
    # Pressed lips stay a pixel apart: coincident spline points with different sources make the
    # warp ring like a struck bell.
    for upper, lower in zip(UPPER_INNER, reversed(LOWER_INNER)):
        shortfall = MIN_LIP_GAP - (points[lower, 1] - points[upper, 1])
        if shortfall > 0:
            points[upper, 1] -= shortfall / 2
            points[lower, 1] += shortfall / 2

    # The outer lip lines ride on the inner ones at the person's own thickness.
    upper_scale = 1.0 - 0.15 * open_ - 0.2 * max(spread, 0.0) + 0.3 * max(-spread, 0.0)
    lower_scale = 1.0 - 0.2 * open_ - 0.25 * max(spread, 0.0) + 0.35 * max(-spread, 0.0) - 0.4 * teeth
    outer_upper, outer_lower = list(UPPER_OUTER), list(LOWER_OUTER)
    points[outer_upper, 1] = _line_y(points, UPPER_LINE, points[outer_upper, 0]) - upper_thick * upper_scale
    points[outer_lower, 1] = _line_y(points, LOWER_LINE, points[outer_lower, 0]) + lower_thick * max(lower_scale, 0.3)
    for corner, inner_corner in ((48, 60), (54, 64)):
        points[corner, 1] += points[inner_corner, 1] - rest[inner_corner, 1]
    return points


def lip_line_points(points: np.ndarray) -> np.ndarray:
    """(16, 2) points on the smooth inner lip curves between their landmarks (a third and two
    thirds along each segment): pinned in the warp, so the lips between landmarks close and part
    with them instead of leaving the photograph's own opening (a smile's teeth) showing."""
    curves = [smooth_curve(points[list(line)], samples=3) for line in (UPPER_LINE, LOWER_LINE)]
    return np.vstack([curve[[i for i in range(len(curve)) if i % 3]] for curve in curves])


def tps_map(
    targets: np.ndarray, sources: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray, regularisation: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate spline through (target -> source) pairs, evaluated on a grid: a backward map.

    ``regularisation`` is added to the kernel's diagonal: a little smoothing that keeps nearly
    coincident points from making the system singular (smaller: closer interpolation)."""
    count = len(targets)
    diff = targets[:, None, :] - targets[None, :, :]
    r2 = (diff**2).sum(-1)
    kernel = np.where(r2 > 0, r2 * np.log(r2 + 1e-12), 0.0) / 2
    affine = np.hstack([np.ones((count, 1)), targets])
    system = np.zeros((count + 3, count + 3))
    system[:count, :count] = kernel + regularisation * np.eye(count)
    system[:count, count:] = affine
    system[count:, :count] = affine.T
    rhs = np.zeros((count + 3, 2))
    rhs[:count] = sources
    coefficients = np.linalg.solve(system, rhs)
    query = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    # Squared distances by one matrix product (the (G, N, 2) difference array costs more than
    # the spline's solve); r^2 log r^2 is 0 at r = 0.
    q2 = np.add.outer((query**2).sum(axis=1), (targets**2).sum(axis=1)) - 2.0 * (query @ targets.T)
    np.maximum(q2, 1e-12, out=q2)
    basis = q2 * np.log(q2) / 2
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
        y1 = int(min(height, lm[8, 1] + 0.9 * max(width, jaw_scale(lm))))
        self.box = (x0, y0, x1, y1)
        border = []
        for t in np.linspace(0, 1, 9):
            border += [
                (x0 + t * (x1 - x0), y0),
                (x0 + t * (x1 - x0), y1 - 1),
                (x0, y0 + t * (y1 - y0)),
                (x1 - 1, y0 + t * (y1 - y0)),
            ]
        self._anchors = np.unique(np.array(border), axis=0)
        step = self.GRID_STEP
        gx = np.arange(x0, x1 + step, step, dtype=np.float64)
        gy = np.arange(y0, y1 + step, step, dtype=np.float64)
        self._grid_x, self._grid_y = np.meshgrid(gx, gy)
        self._node_maps: dict[tuple[int, int, int], np.ndarray] = {}
        self.palette = MouthPalette.from_rig(rig)
        self._interior = _interior_coverage(rig.landmarks, (height, image_width))

    def _exact_map(self, open_: float, spread: float, teeth: float) -> np.ndarray:
        """(2, gh, gw) coarse backward map (photo coordinates) for one pose."""
        rig = self.rig
        posed = posed_landmarks(rig, open_, spread, teeth)
        moving = [i for i in range(68) if i not in FIXED]
        targets = np.vstack([posed[list(FIXED)], posed[moving], lip_line_points(posed), self._anchors])
        rest = rig.landmarks
        sources = np.vstack([rest[list(FIXED)], rest[moving], lip_line_points(rest), self._anchors])
        return np.stack(tps_map(targets, sources, self._grid_x, self._grid_y)).astype(np.float32)

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

    def render(
        self, open_: float, spread: float, teeth: float, posed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The posed photograph and its posed landmarks (``posed``: already found for this pose)."""
        rig = self.rig
        posed = posed_landmarks(rig, open_, spread, teeth) if posed is None else posed
        map_x, map_y = self.coarse_map(open_, spread, teeth)
        x0, y0, x1, y1 = self.box
        size = (x1 - x0, y1 - y0)
        full = (map_x.shape[1] * self.GRID_STEP, map_x.shape[0] * self.GRID_STEP)
        offset = self.GRID_STEP / 2 - 0.5  # resize aligns pixel centres, not grid nodes
        full_x = _shift(cv2.resize(map_x, full, interpolation=cv2.INTER_LINEAR), offset)[: size[1], : size[0]]
        full_y = _shift(cv2.resize(map_y, full, interpolation=cv2.INTER_LINEAR), offset)[: size[1], : size[0]]
        image = rig.image.copy()
        image[y0:y1, x0:x1] = cv2.remap(rig.image, full_x, full_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # The photograph's own opening (a smile's teeth), squeezed by the warp: painted over too.
        interior = cv2.remap(self._interior, full_x, full_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        _paint_mouth(image, posed, self.palette, rig.mouth_width, teeth, interior, (x0, y0))
        return image, posed


def _interior_coverage(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 coverage of the photograph's own mouth opening (inner lips, a pixel wider)."""
    contour = np.vstack([smooth_curve(landmarks[list(UPPER_LINE)]), smooth_curve(landmarks[list(LOWER_LINE)])[::-1]])
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(contour * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 0.5)


def _shift(values: np.ndarray, offset: float) -> np.ndarray:
    """Resample a map so that pixel i holds the value at coarse position i + offset (sub-pixel)."""
    matrix = np.float32([[1, 0, offset], [0, 1, offset]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # dst(x) = src(x + offset)
    return cv2.warpAffine(
        values, matrix, (values.shape[1], values.shape[0]), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )


SKIN_SPOTS = ((41, 3), (46, 13), (8, 57))  # cheek under each eye, chin: midpoints of landmark pairs


@dataclass(frozen=True)
class MouthPalette:
    """The mouth's colours in this photograph's own light (RGB, 0..255).

    Derived from the rig, not fixed: the lips' median colour, the skin's (cheeks and chin), and an
    off-white for the teeth at the brightness and white balance of the eyes' whites. The cavity is
    the lips' hue, more saturated and much darker (darkest at the back), the tongue a shaded lip.
    """

    lip: tuple[float, float, float]
    skin: tuple[float, float, float]
    cavity: tuple[float, float, float]  # the inside of the lips, at the edge of the opening
    throat: tuple[float, float, float]  # the back of the mouth
    tongue: tuple[float, float, float]
    tooth: tuple[float, float, float]

    @classmethod
    def from_rig(cls, rig: FaceRig) -> MouthPalette:
        image, lm = rig.image, rig.landmarks
        radius = max(2.0, 0.05 * rig.face_width)
        skin = _median_colour(image, [(lm[a] + lm[b]) / 2 for a, b in SKIN_SPOTS], radius)
        upper_lip = np.vstack([lm[48:55], lm[[64, 63, 62, 61, 60]]])
        lower_lip = np.vstack([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]])
        lip = _median_colour(image, [upper_lip, lower_lip])
        hue, saturation, value = colorsys.rgb_to_hsv(*(lip / 255.0))
        cavity = colorsys.hsv_to_rgb(hue, min(1.0, 1.2 * saturation + 0.15), 0.38 * value)
        throat = colorsys.hsv_to_rgb(hue, min(1.0, 1.1 * saturation + 0.25), 0.13 * value)
        tongue = colorsys.hsv_to_rgb(hue, min(1.0, 0.95 * saturation + 0.05), 0.8 * value)
        # Teeth: about as bright as the face's highlights (or the eyes' whites where they are
        # white, not seen through tinted glasses), in the white balance of the photograph's
        # brightest pixels (white-patch), warmed a little by the skin's light, ivory.
        whites = _eye_whites(image, lm)
        white_luma = _luma(whites) if colorsys.rgb_to_hsv(*(whites / 255.0))[1] < 0.25 else 0.0
        luma = float(np.clip(max(white_luma, 1.1 * _luma(skin), 0.85 * _bright_luma(image, lm)), 90.0, 235.0))
        white = _white_patch(image)
        balance = 1.0 + 0.6 * (np.clip(white / max(white.mean(), 1.0), 0.85, 1.15) - 1.0)
        tint = (skin / max(skin.mean(), 1.0)) ** 0.4  # the room's light, reflected by the face
        tooth = balance * np.clip(tint, 0.8, 1.2) * np.array([1.02, 1.0, 0.93])
        tooth *= luma / _luma(tooth)
        return cls(
            lip=_rgb(lip),
            skin=_rgb(skin),
            cavity=_rgb(255.0 * np.array(cavity)),
            throat=_rgb(255.0 * np.array(throat)),
            tongue=_rgb(255.0 * np.array(tongue)),
            tooth=_rgb(tooth),
        )


def _rgb(colour: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(np.clip(c, 0.0, 255.0)) for c in colour)
    return (r, g, b)


def _luma(colour: np.ndarray) -> float:
    return float(np.dot(colour, (0.299, 0.587, 0.114)))


def _region(image: np.ndarray, shapes: list[np.ndarray], radius: float | None = None) -> np.ndarray:
    """(N, 3) float pixels inside polygons, or inside discs of ``radius`` around points."""
    points = np.vstack([np.atleast_2d(s) for s in shapes])
    pad = (radius or 0.0) + 2
    height, width = image.shape[:2]
    x0, y0 = np.maximum(np.floor(points.min(axis=0) - pad), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0) + pad), (width, height)).astype(int)
    mask = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.uint8)
    for shape in shapes:
        local = np.round(np.atleast_2d(shape) - (x0, y0)).astype(np.int32)
        if radius is None:
            cv2.fillPoly(mask, [local], 1)
        else:
            cv2.circle(mask, tuple(int(v) for v in local[0]), int(round(radius)), 1, -1)
    pixels = image[y0:y1, x0:x1][mask[: y1 - y0, : x1 - x0] > 0].astype(np.float64)
    return pixels if len(pixels) else image.reshape(-1, 3).astype(np.float64)


def _median_colour(image: np.ndarray, shapes: list[np.ndarray], radius: float | None = None) -> np.ndarray:
    return np.median(_region(image, shapes, radius), axis=0)


def _eye_whites(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median colour of the brightest quarter of the pixels inside the eye outlines."""
    pixels = _region(image, [lm[36:42], lm[42:48]])
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    return np.median(pixels[luma >= np.percentile(luma, 75)], axis=0)


def _white_patch(image: np.ndarray) -> np.ndarray:
    """Mean colour of the brightest 2% of the photograph: its white balance (white-patch)."""
    pixels = image.reshape(-1, 3)[:: max(1, image.shape[0] * image.shape[1] // 20000)].astype(np.float64)
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    return pixels[luma >= np.percentile(luma, 98)].mean(axis=0)


def _bright_luma(image: np.ndarray, lm: np.ndarray) -> float:
    """The face's highlights (98th percentile of luma over the face's hull): the exposure."""
    hull = cv2.convexHull(np.round(lm).astype(np.int32)).reshape(-1, 2)
    pixels = _region(image, [hull])
    return float(np.percentile(pixels @ np.array([0.299, 0.587, 0.114]), 98))


def smooth_curve(points: np.ndarray, samples: int = 6) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` (N, 2), ``samples`` per segment: ((N - 1) * samples + 1, 2).

    Lips are curved between their landmarks; polygons through them paint diamonds.
    """
    padded = np.vstack([points[:1], points, points[-1:]])
    t = (np.arange(samples) / samples)[:, None, None]
    p0, p1, p2, p3 = padded[:-3], padded[1:-2], padded[2:-1], padded[3:]
    curve = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    return np.vstack([curve.transpose(1, 0, 2).reshape(-1, 2), points[-1:]])


def _curve_y(curve: np.ndarray, x: np.ndarray) -> np.ndarray:
    order = np.argsort(curve[:, 0], kind="stable")
    return np.interp(x, curve[order, 0], curve[order, 1])


def _ramp(distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a pixel whose centre lies ``distance`` px inside an edge."""
    return np.clip(distance / EDGE + 0.5, 0.0, 1.0)


EDGE = 1.5  # photo pixels over which a painted edge fades
TOOTH_EDGES = (0.0, 0.16, 0.28, 0.38, 0.46)  # tooth boundaries from the mid-line, in mouth widths


def _paint_mouth(
    image: np.ndarray,
    posed: np.ndarray,
    palette: MouthPalette,
    mouth_width: float,
    teeth: float,
    interior: np.ndarray | None = None,
    origin: tuple[int, int] = (0, 0),
) -> None:
    """Paint the mouth inside the posed inner lips: a shaded cavity, tongue, upper and lower teeth.

    Shading is per column between the smooth upper and lower inner lip curves: the cavity darkens
    towards the back (centre) of the mouth, the teeth towards the corners (the arch recedes) and
    under the upper lip, the tongue below its lit top. ``interior`` (coverage of the photograph's
    own mouth opening after the warp, its top-left corner at ``origin`` in ``image``) is painted
    too, so a photograph's own teeth or gap never show between the landmarks.
    """
    upper = smooth_curve(posed[list(UPPER_LINE)])
    lower = smooth_curve(posed[list(LOWER_LINE)])
    contour = np.vstack([upper, lower])
    height, width = image.shape[:2]
    margin = 2 * EDGE + 1
    x0, y0 = np.maximum(np.floor(contour.min(axis=0) - margin), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(contour.max(axis=0) + margin), (width, height)).astype(int)
    if x1 <= x0 or y1 <= y0:
        return
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    top, bottom = _curve_y(upper, xs).astype(np.float32), _curve_y(lower, xs).astype(np.float32)
    left, right = float(contour[:, 0].min()), float(contour[:, 0].max())
    across = _ramp(xs - left) * _ramp(right - xs)
    coverage = _ramp(ys - top) * _ramp(bottom - ys) * across
    if interior is not None:
        ix, iy = origin
        window = interior[y0 - iy : y1 - iy, x0 - ix : x1 - ix]
        if window.shape == coverage.shape:
            coverage = np.maximum(coverage, window)
    if coverage.max() <= 0:
        return
    gap = np.maximum(bottom - top, 0.0)
    mid = float(np.interp((left + right) / 2, xs, gap))
    u = np.clip((xs - (left + right) / 2) / max((right - left) / 2, 1.0), -1.0, 1.0)
    v = np.clip((ys - top) / np.maximum(gap, 1e-3), 0.0, 1.0)
    light = 0.6 + 0.4 * min(1.0, mid / (0.25 * mouth_width))  # a wide mouth lets in more light
    depth = (np.clip(1 - u**2, 0, 1) * (1 - (2 * v - 1) ** 2)) ** 0.7
    colour = _lerp(np.array(palette.cavity, np.float32), np.array(palette.throat, np.float32), depth[..., None])
    colour *= (light * (0.8 + 0.2 * v))[..., None]
    # Teeth and tongue appear as the lips part; between pressed lips only a lip-coloured shadow.
    parted = np.clip((gap - 0.03 * mouth_width) / (0.05 * mouth_width), 0.0, 1.0)
    seam = np.array(palette.lip, np.float32) * 0.55
    colour = _lerp(seam, colour, np.clip(gap / (0.06 * mouth_width), 0.0, 1.0)[None, :, None])
    if mid > 0.5:
        tongue_top = bottom - 0.38 * gap * (1 - 0.6 * u**2)
        tongue = _ramp(ys - tongue_top)
        below = np.clip((ys - tongue_top) / np.maximum(bottom - tongue_top, 1e-3), 0, 1)
        shade = light * (0.75 + 0.3 * (1 - below)) * (1 - 0.45 * u**2)
        colour = _lerp(colour, np.array(palette.tongue, np.float32) * shade[..., None], (tongue * parted)[..., None])
    centre = float(posed[[51, 57, 62, 66], 0].mean())
    arch = np.clip(1 - 0.5 * ((xs - centre) / (0.5 * mouth_width)) ** 2, 0.35, 1.0)
    sigma = max(0.012 * mouth_width, 0.5)
    edges = centre + np.concatenate([TOOTH_EDGES, -np.array(TOOTH_EDGES[1:])]) * mouth_width
    separators = 1 - 0.15 * np.exp(-(((xs[:, None] - edges[None]) / sigma) ** 2)).max(axis=1)
    tooth = np.array(palette.tooth, np.float32)
    if mid > 0.5:
        low_height = np.minimum(0.1 * gap, 0.035 * mouth_width) * np.clip(1 - 3.0 * u**2, 0, 1)
        wide = np.clip((gap - 0.12 * mouth_width) / (0.1 * mouth_width), 0, 1)  # lower teeth show in a wide mouth
        lower_teeth = _ramp(ys - (bottom - low_height)) * wide
        colour = _lerp(colour, tooth * (0.8 * light * arch)[None, :, None], lower_teeth[..., None] * 0.8)
    up_height = np.minimum(0.35 * gap, 0.12 * mouth_width) * (1 - 0.45 * u**2)
    up_height = np.maximum(up_height, teeth * np.minimum(gap, 0.2 * mouth_width))
    upper_teeth = _ramp(top + up_height - ys) * np.maximum(parted, teeth)
    under_lip = 0.78 + 0.22 * np.clip((ys - top) / np.maximum(0.35 * up_height, 0.5), 0, 1)
    colour = _lerp(colour, tooth * (under_lip * (arch * separators)[None])[..., None], upper_teeth[..., None])
    patch = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(_lerp(patch, colour, coverage[..., None]), 0, 255).astype(np.uint8)


def _lerp(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return a + weight * (b - a)
