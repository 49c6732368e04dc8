"""A turned head from a frontal photograph: yaw and pitch by a depth-aware thin-plate-spline warp.

Each of the 68 landmarks gets a generic depth (nose forward, face edges back; fractions of the
face width), a ring around the skull and hair sits at the depth of the neck's pivot, and the
neck, shoulders and photo border stay put. Rotating those points about the pivot and projecting
them (orthographic: a face is small against its distance to the camera) gives where they go; a
thin-plate spline through the pairs warps the photograph. Maps are solved at pose nodes every
few degrees and interpolated, as the mouth renderer does, so a frame costs a few remaps.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from avsr.data.synth.mouth import tps_map
from avsr.data.synth.rig import FaceRig

# Depth of each landmark towards the camera, in face widths, from the plane of the eye corners.
# (The jaw line is kept shallow: deeper, a turn squeezes the far eye against the jaw and dlib
# finds that eye's outer corner several pixels off.)
DEPTH = np.array(
    [-0.32, -0.29, -0.25, -0.2, -0.13, -0.06, 0.0, 0.05, 0.07]  # jaw, chin
    + [0.05, 0.0, -0.06, -0.13, -0.2, -0.25, -0.29, -0.32]
    + [-0.1, -0.04, 0.0, 0.02, 0.03, 0.03, 0.02, 0.0, -0.04, -0.1]  # brows
    + [0.03, 0.08, 0.14, 0.21, 0.07, 0.11, 0.13, 0.11, 0.07]  # nose ridge, nostrils
    + [-0.07, -0.02, -0.02, -0.02, -0.02, -0.02, -0.02, -0.02, -0.02, -0.07, -0.02, -0.02]  # eyes
    + [0.02, 0.06, 0.09, 0.1, 0.09, 0.06, 0.02, 0.06, 0.08, 0.09, 0.08, 0.06]  # outer lips
    + [0.02, 0.07, 0.08, 0.07, 0.02, 0.07, 0.08, 0.07]  # inner lips
)
PIVOT_DEPTH = -0.6  # the neck's axes lie this far behind the eyes (face widths)
NECK = ((-0.3, 0.3), (0.0, 0.35), (0.3, 0.3))  # fixed points below the chin (face widths)
POSE_STEP = 2.5  # degrees between the pose nodes whose maps are solved exactly
POSE_LIMIT = 25.0  # |yaw|, |pitch| beyond this are clamped


class HeadRenderer:
    """Backward maps (turned photo -> photo) for a head pose, and where photo points go."""

    GRID_STEP = 8  # photo pixels between the nodes of a coarse map

    def __init__(self, rig: FaceRig) -> None:
        self.rig = rig
        lm = rig.landmarks
        width = rig.face_width
        height, image_width = rig.image.shape[:2]
        centre_x = lm[27:31, 0].mean()
        brow_y, chin_y = lm[17:27, 1].mean(), lm[8, 1]
        self.pivot = np.array([centre_x, lm[33, 1] + 0.2 * width, PIVOT_DEPTH * width])
        # Skull and hair: an arc over the head (the person mask's ellipse) at the pivot's depth,
        # and a row over the forehead that turns with the face.
        head_y = (brow_y + chin_y) / 2 - 0.12 * width
        angles = np.deg2rad(np.linspace(160, 380, 12))
        ring = np.stack([centre_x + 0.8 * width * np.cos(angles), head_y + 0.95 * width * np.sin(angles)], axis=1)
        forehead = lm[[17, 19, 21, 22, 24, 26]] - (0, 0.22 * width)
        moving = np.vstack([lm, ring, forehead])
        depth = np.concatenate([DEPTH, np.full(len(ring), PIVOT_DEPTH), DEPTH[[17, 19, 21, 22, 24, 26]] - 0.05]) * width
        neck = np.array([(centre_x + dx * width, chin_y + dy * width) for dx, dy in NECK])
        border = []
        for t in np.linspace(0, 1, 9):
            x, y = t * (image_width - 1), t * (height - 1)
            border += [(x, 0), (x, height - 1), (0, y), (image_width - 1, y)]
        fixed = np.vstack([neck, np.unique(np.array(border), axis=0)])
        self._moving, self._depth, self._fixed = moving, depth, fixed
        step = self.GRID_STEP
        gx = np.arange(0, image_width + step, step, dtype=np.float64)
        gy = np.arange(0, height + step, step, dtype=np.float64)
        self._grid_x, self._grid_y = np.meshgrid(gx, gy)
        self._node_maps: dict[tuple[int, int], np.ndarray] = {}

    def rotate(self, points: np.ndarray, depth: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
        """(N, 2) image positions of photo points at ``depth`` (N,) pixels after the turn.

        Positive yaw turns the nose towards the image's right, positive pitch lifts it.
        """
        yaw_r, pitch_r = np.deg2rad(yaw), np.deg2rad(pitch)
        x = points[:, 0] - self.pivot[0]
        y = points[:, 1] - self.pivot[1]
        z = depth - self.pivot[2]
        turned_x = x * np.cos(yaw_r) + z * np.sin(yaw_r)
        turned_z = -x * np.sin(yaw_r) + z * np.cos(yaw_r)
        tilted_y = y * np.cos(pitch_r) - turned_z * np.sin(pitch_r)
        return np.stack([turned_x + self.pivot[0], tilted_y + self.pivot[1]], axis=1)

    def _exact_map(self, yaw: float, pitch: float) -> np.ndarray:
        """(gh, gw, 2) float32 coarse backward map for one pose: turned photo -> photo."""
        targets = np.vstack([self.rotate(self._moving, self._depth, yaw, pitch), self._fixed])
        sources = np.vstack([self._moving, self._fixed])
        map_x, map_y = tps_map(targets, sources, self._grid_x, self._grid_y)
        return np.stack([map_x, map_y], axis=-1).astype(np.float32)

    def _node_map(self, node: tuple[int, int]) -> np.ndarray:
        if node not in self._node_maps:
            self._node_maps[node] = self._exact_map(node[0] * POSE_STEP, node[1] * POSE_STEP)
        return self._node_maps[node]

    def coarse_map(self, yaw: float, pitch: float) -> np.ndarray:
        """(gh, gw, 2) backward map interpolated between the four surrounding pose nodes."""
        corners = []
        for value in (yaw, pitch):
            position = float(np.clip(value, -POSE_LIMIT, POSE_LIMIT)) / POSE_STEP
            below = int(np.floor(position))
            corners.append(((below, 1.0 - (position - below)), (below + 1, position - below)))
        result = None
        for (i, wi), (j, wj) in itertools.product(*corners):
            weight = wi * wj
            if weight > 1e-9:
                term = weight * self._node_map((i, j))
                result = term if result is None else result + term
        return result

    def frame_maps(self, coarse: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
        """(size, size, 2) float32 photo coordinates of each frame pixel: the inverse of the
        photo->frame affine ``matrix`` (2, 3), then the head's backward map."""
        inverse = cv2.invertAffineTransform(matrix)
        grid = np.arange(size, dtype=np.float32)
        turned_x = inverse[0, 0] * grid[None, :] + inverse[0, 1] * grid[:, None] + inverse[0, 2]
        turned_y = inverse[1, 0] * grid[None, :] + inverse[1, 1] * grid[:, None] + inverse[1, 2]
        scale = 1.0 / self.GRID_STEP
        return cv2.remap(
            coarse,
            (turned_x * scale).astype(np.float32),
            (turned_y * scale).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def locate(self, points: np.ndarray, coarse: np.ndarray, iterations: int = 8) -> np.ndarray:
        """(N, 2) where photo points appear in the turned photo: the backward map inverted by
        fixed-point steps (its Jacobian is near the identity), so landmarks sit exactly where
        the rendered pixels put them."""
        found = points.astype(np.float64).copy()
        for _ in range(iterations):
            found += points - _bilinear(coarse, found / self.GRID_STEP)
        return found


def _bilinear(grid: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Values of a (gh, gw, C) grid at fractional (x, y) grid positions (N, 2), edges held."""
    height, width = grid.shape[:2]
    x = np.clip(positions[:, 0], 0, width - 1.000001)
    y = np.clip(positions[:, 1], 0, height - 1.000001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy
