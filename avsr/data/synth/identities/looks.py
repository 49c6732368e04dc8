"""Appearance edits that make another person of a face: skin tone, hair colour, facial hair,
glasses and age-like texture, painted on the canonical canvas from the 68 landmarks.

Regions come from the landmarks plus colour statistics: skin is what looks like the cheeks
(inside the face and neck), hair is what is neither skin nor the photograph's background inside
the head ellipse and above the brows or beside the face. Everything is soft-edged, and nothing
is painted on the lips' inner contour or the eyes, which the mouth renderer and the landmarker
need as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HAIR_COLOURS = {  # Lab (L 0-100, a, b): what hair is recoloured to
    "black": (14.0, 1.0, 1.0),
    "dark_brown": (24.0, 6.0, 12.0),
    "brown": (35.0, 10.0, 20.0),
    "auburn": (35.0, 25.0, 30.0),
    "blond": (68.0, 4.0, 32.0),
    "grey": (66.0, 0.0, 2.0),
}
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "beard")
GLASSES = ("none", "round", "rectangular", "thick")


@dataclass(frozen=True)
class Looks:
    """Appearance edits of one identity (all optional: the defaults change nothing)."""

    skin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # Lab shift of the skin (L, a, b)
    hair: str = ""  # a HAIR_COLOURS name, "" keeps the photograph's
    facial_hair: str = "none"
    facial_hair_colour: tuple[float, float, float] = (20.0, 4.0, 8.0)  # Lab
    glasses: str = "none"
    glasses_colour: tuple[int, int, int] = (30, 30, 30)  # RGB of the frames
    age: float = 0.0  # 0: as photographed; 1: deep wrinkles
    seed: int = 0  # texture noise (stubble, wrinkles)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Looks:
        tone = float(rng.uniform(-1, 1))
        skin = (
            float(round(-28 * max(0.0, -tone) + 10 * max(0.0, tone), 2)),  # darker ... lighter
            float(round(rng.uniform(-3, 6), 2)),
            float(round(8 * max(0.0, -tone) + rng.uniform(-4, 5), 2)),
        )
        hair = list(HAIR_COLOURS)[int(rng.integers(len(HAIR_COLOURS)))] if rng.random() < 0.8 else ""
        facial_hair = FACIAL_HAIR[int(rng.choice(len(FACIAL_HAIR), p=[0.4, 0.1, 0.15, 0.1, 0.25]))]
        glasses = GLASSES[int(rng.choice(len(GLASSES), p=[0.5, 0.17, 0.17, 0.16]))]
        frame_colour = [(25, 25, 25), (120, 80, 40), (180, 180, 190), (90, 20, 30)][int(rng.integers(4))]
        hair_lab = HAIR_COLOURS[hair] if hair else HAIR_COLOURS["dark_brown"]
        return cls(
            skin=skin,
            hair=hair,
            facial_hair=facial_hair,
            facial_hair_colour=(hair_lab[0] * 0.8, hair_lab[1], hair_lab[2]),
            glasses=glasses,
            glasses_colour=frame_colour,
            age=float(round(rng.uniform(0, 1) ** 2, 3)),
            seed=int(rng.integers(2**31)),
        )

    def apply(self, image: np.ndarray, landmarks: np.ndarray, person: np.ndarray) -> np.ndarray:
        """The edited image (H, W, 3) uint8 RGB; ``person`` (H, W) float32 is the head-and-shoulders mask."""
        rng = np.random.default_rng(self.seed)
        lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        skin = skin_mask(lab, landmarks)
        if any(self.skin):
            lab += skin[..., None] * np.float32(self.skin)
        if self.hair:
            hair = hair_mask(lab, landmarks, person, skin)
            target = np.float32(HAIR_COLOURS[self.hair])
            lightness = lab[..., 0]
            mean = float((lightness * hair).sum() / max(hair.sum(), 1.0))
            recoloured = np.stack(
                [
                    np.clip(target[0] + 0.7 * (lightness - mean), 0, 100),
                    np.full_like(lightness, target[1]),
                    np.full_like(lightness, target[2]),
                ],
                axis=-1,
            )
            lab += hair[..., None] * (recoloured - lab)
        if self.age > 0:
            lab[..., 0] -= self.age * wrinkles(landmarks, lab.shape[:2], rng) * skin
        if self.facial_hair != "none":
            lab = paint_facial_hair(lab, landmarks, self.facial_hair, np.float32(self.facial_hair_colour), rng)
        rgb = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0, 0, 255)
        if self.glasses != "none":
            rgb = draw_glasses(rgb, landmarks, self.glasses, self.glasses_colour)
        return np.round(rgb).astype(np.uint8)


def _polygon(shape: tuple[int, int], points: np.ndarray, blur: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    mask = mask.astype(np.float32) / 255.0
    return cv2.GaussianBlur(mask, (0, 0), blur) if blur > 0 else mask


def _eye_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[36:42].mean(axis=0) - landmarks[42:48].mean(axis=0)))


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """The jaw line closed over the forehead (brows raised by 0.7 eye distances): (27, 2)."""
    unit = _eye_distance(landmarks)
    forehead = landmarks[26:16:-1].copy()
    forehead[:, 1] -= 0.7 * unit
    return np.vstack([landmarks[0:17], forehead])


def skin_mask(lab: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: skin-coloured pixels of the face, ears and neck (not eyes)."""
    shape = lab.shape[:2]
    unit = _eye_distance(landmarks)
    sample = _polygon(shape, landmarks[[1, 2, 3, 48, 31, 39, 40, 41]], 0) + _polygon(
        shape, landmarks[[15, 14, 13, 54, 35, 42, 47, 46]], 0
    )
    pixels = lab[sample > 0.5]
    if len(pixels) < 20:
        return np.zeros(shape, np.float32)
    centre = np.median(pixels, axis=0)
    spread = np.maximum(np.percentile(np.abs(pixels - centre), 80, axis=0), [8.0, 3.0, 3.0])
    distance = np.sqrt((((lab - centre) / (2.5 * spread)) ** 2).sum(-1))
    colour = np.clip(1.5 - distance, 0, 1).astype(np.float32)
    region = _polygon(shape, face_outline(landmarks), 0)
    chin = landmarks[8]
    neck = np.array(
        [
            [landmarks[4, 0], landmarks[4, 1]],
            [landmarks[12, 0], landmarks[12, 1]],
            [landmarks[12, 0], chin[1] + 1.6 * unit],
            [landmarks[4, 0], chin[1] + 1.6 * unit],
        ]
    )
    region = np.maximum(region, _polygon(shape, neck, 0))
    region = cv2.dilate(region, np.ones((int(0.3 * unit) | 1,) * 2, np.uint8))
    for eye in (landmarks[36:42], landmarks[42:48]):
        centre_eye = eye.mean(axis=0)
        region = np.minimum(region, 1 - _polygon(shape, centre_eye + (eye - centre_eye) * 1.4, 0))
    return cv2.GaussianBlur(colour * region, (0, 0), 0.06 * unit)


def hair_mask(lab: np.ndarray, landmarks: np.ndarray, person: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(H, W) float32: inside the head ellipse, above the brows or outside the face, not skin, not
    the photograph's background colour."""
    shape = lab.shape[:2]
    unit = _eye_distance(landmarks)
    height = shape[0]
    rows = np.arange(height, dtype=np.float32)[:, None]
    brow_y = landmarks[17:27, 1].min()
    chin_y = landmarks[8, 1]
    face = _polygon(shape, face_outline(landmarks), 0.1 * unit)
    head = np.zeros(shape, np.uint8)
    centre = landmarks[27:36, 0].mean()
    cv2.ellipse(head, (int(centre), int(brow_y)), (int(1.55 * unit), int(1.55 * unit)), 0, 0, 360, 255, -1)
    sides = np.zeros(shape, np.uint8)
    cv2.rectangle(
        sides, (int(centre - 1.6 * unit), int(brow_y)), (int(centre + 1.6 * unit), int(chin_y - 0.3 * unit)), 255, -1
    )
    region = np.maximum(head, sides).astype(np.float32) / 255.0
    region *= 1 - face
    region *= np.clip((chin_y - rows) / (0.3 * unit), 0, 1)
    # The photograph's background: sampled in the top corners of the head's neighbourhood.
    left = int(max(0, centre - 2.6 * unit))
    right = int(min(shape[1], centre + 2.6 * unit))
    top = int(max(0, brow_y - 2.2 * unit))
    band = np.concatenate(
        [
            lab[top : top + int(0.5 * unit), left : left + int(0.5 * unit)].reshape(-1, 3),
            lab[top : top + int(0.5 * unit), right - int(0.5 * unit) : right].reshape(-1, 3),
        ]
    )
    if len(band):
        background = np.median(band, axis=0)
        near = np.sqrt((((lab - background) / np.float32([10, 6, 6])) ** 2).sum(-1))
        region *= np.clip(near - 1.0, 0, 1)
    region *= 1 - np.clip(skin * 1.5, 0, 1)
    region *= person
    return cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.04 * unit)


def wrinkles(landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 darkening (Lab L units) of forehead lines, crow's feet and nasolabial folds."""
    unit = _eye_distance(landmarks)
    canvas = np.zeros(shape, np.float32)
    brow_y = landmarks[17:27, 1].min()
    left, right = landmarks[19, 0], landmarks[24, 0]
    for row in range(3):
        y = brow_y - (0.18 + 0.14 * row) * unit
        xs = np.linspace(left, right, 12)
        ys = y + rng.normal(0, 0.015 * unit, size=12) + 0.04 * unit * np.sin(np.linspace(0, np.pi, 12))
        cv2.polylines(
            canvas, [np.round(np.stack([xs, ys], 1) * 4).astype(np.int32)], False, 1.0, 1, cv2.LINE_AA, shift=2
        )
    for nose, corner in ((31, 48), (35, 54)):
        start, end = landmarks[nose], landmarks[corner]
        out = np.sign(end[0] - landmarks[33, 0]) * 0.18 * unit
        control = (start + end) / 2 + [out, 0]
        ts = np.linspace(0.1, 1.1, 10)[:, None]
        curve = (1 - ts) ** 2 * (start + [out * 0.5, 0]) + 2 * (1 - ts) * ts * control + ts**2 * (end + [out, 0])
        cv2.polylines(canvas, [np.round(curve * 4).astype(np.int32)], False, 1.5, 2, cv2.LINE_AA, shift=2)
    for corner, side in ((36, -1), (45, 1)):
        for angle in (-0.35, 0.0, 0.35):
            start = landmarks[corner] + [side * 0.12 * unit, 0]
            end = start + 0.3 * unit * np.array([side * np.cos(angle), np.sin(angle)])
            cv2.line(
                canvas,
                tuple(np.round(start * 4).astype(int)),
                tuple(np.round(end * 4).astype(int)),
                0.8,
                1,
                cv2.LINE_AA,
                shift=2,
            )
    return cv2.GaussianBlur(canvas, (0, 0), 0.012 * unit) * 22.0


def paint_facial_hair(
    lab: np.ndarray, landmarks: np.ndarray, kind: str, colour: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Stubble, moustache, goatee or beard: a strand texture of ``colour`` (Lab) below the nose,
    never over the lips' opening (the mouth renderer paints the cavity there)."""
    shape = lab.shape[:2]
    unit = _eye_distance(landmarks)
    moustache = np.vstack([landmarks[[48, 49, 50, 51, 52, 53, 54]], landmarks[[35, 34, 33, 32, 31]] + [0, 0.08 * unit]])
    moustache[0] += [-0.08 * unit, 0.05 * unit]
    moustache[6] += [0.08 * unit, 0.05 * unit]
    lower = landmarks[[54, 55, 56, 57, 58, 59, 48]]
    goatee = np.vstack([lower, (landmarks[[10, 9, 8, 7, 6]] + [0, 0.05 * unit])])
    if kind == "moustache":
        region, density = _polygon(shape, moustache, 0.05 * unit), 0.9
    elif kind == "goatee":
        region, density = (
            np.maximum(_polygon(shape, moustache, 0.05 * unit), _polygon(shape, goatee, 0.06 * unit)),
            0.85,
        )
    else:
        jaw = landmarks[2:15].copy()
        cheek_line = np.array(
            [
                landmarks[14] + (landmarks[35] - landmarks[14]) * 0.35,
                landmarks[2] + (landmarks[31] - landmarks[2]) * 0.35,
            ]
        )
        region = np.maximum(
            _polygon(shape, np.vstack([jaw + [0, 0.08 * unit], cheek_line]), 0.08 * unit),
            _polygon(shape, moustache, 0.05 * unit),
        )
        density = 0.35 if kind == "stubble" else 0.92
    lips = _polygon(shape, landmarks[48:60], 0.02 * unit)
    region *= 1 - lips
    # Strands: noise stretched downwards, thresholded into hairs.
    noise = rng.standard_normal(shape).astype(np.float32)
    length = max(3, int(0.09 * unit)) | 1 if kind != "stubble" else 3
    strands = cv2.GaussianBlur(noise, (1, length), 0)
    strands = np.clip((strands - strands.mean()) / (strands.std() + 1e-6) * 0.5 + 0.5, 0, 1)
    coverage = region * density * (0.55 + 0.45 * strands)
    hair = np.empty_like(lab)
    hair[..., 0] = colour[0] + 14.0 * (strands - 0.5)
    hair[..., 1:] = colour[1:]
    return lab + coverage[..., None] * (hair - lab)


def draw_glasses(rgb: np.ndarray, landmarks: np.ndarray, kind: str, colour: tuple[int, int, int]) -> np.ndarray:
    """Spectacle frames around the eyes, a bridge over the nose, and arms to the sides of the face."""
    unit = _eye_distance(landmarks)
    layer = np.zeros(rgb.shape[:2], np.uint8)
    thickness = {"round": 2, "rectangular": 2, "thick": 4}[kind] * max(1, int(round(unit / 70)))
    centres = []
    for eye in (landmarks[36:42], landmarks[42:48]):
        centre = eye.mean(axis=0) + [0, 0.04 * unit]
        centres.append(centre)
        half_w, half_h = 0.42 * unit, (0.3 if kind != "round" else 0.36) * unit
        c = tuple(np.round(centre * 4).astype(int))
        if kind == "round":
            cv2.ellipse(layer, c, (int(half_w * 4), int(half_h * 4)), 0, 0, 360, 255, thickness, cv2.LINE_AA, shift=2)
        else:
            x0, y0 = centre - [half_w, half_h]
            x1, y1 = centre + [half_w, half_h]
            box = np.array([[x0, y0], [x1, y0], [x1 - 0.05 * unit, y1], [x0 + 0.05 * unit, y1]])
            cv2.polylines(layer, [np.round(box * 4).astype(np.int32)], True, 255, thickness, cv2.LINE_AA, shift=2)
    left, right = centres
    bridge = np.array(
        [left + [0.42 * unit, -0.05 * unit], (left + right) / 2 + [0, -0.12 * unit], right - [0.42 * unit, 0.05 * unit]]
    )
    cv2.polylines(layer, [np.round(bridge * 4).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, shift=2)
    for centre, side, ear in ((left, -1, landmarks[0]), (right, 1, landmarks[16])):
        start = centre + [side * 0.42 * unit, -0.1 * unit]
        end = np.array([ear[0] - side * 0.05 * unit, start[1] + 0.02 * unit])
        cv2.line(
            layer,
            tuple(np.round(start * 4).astype(int)),
            tuple(np.round(end * 4).astype(int)),
            255,
            thickness,
            cv2.LINE_AA,
            shift=2,
        )
    alpha = layer.astype(np.float32)[..., None] / 255.0
    return rgb * (1 - alpha) + alpha * np.float32(colour)
