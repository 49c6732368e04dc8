"""A talking face from one rigged photograph: lips and jaw follow a mouth track, frame by frame.

The mouth renderer (``mouth.py``) poses the photograph's lips for each frame; here each speaker
gets its own framing, head motion, colour, mirror and background, and the frames are composed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avsr.data.synth.mouth import MouthRenderer, posed_landmarks
from avsr.data.synth.rig import FaceRig, astronaut_rig
from avsr.data.synth.visemes import OPEN, SPREAD, TEETH

BACKGROUNDS = ("original", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "gradient")


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
