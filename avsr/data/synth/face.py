"""A talking face from one rigged photograph: lips and jaw follow a mouth track, frame by frame.

The mouth renderer (``mouth.py``) poses the photograph's lips for each frame; here each speaker
gets its own framing, head motion, colour, mirror and background, and the frames are composed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avsr.data.synth.head import POSE_LIMIT, HeadRenderer
from avsr.data.synth.mouth import MouthRenderer, eye_distance, posed_landmarks
from avsr.data.synth.rig import FaceRig, astronaut_rig
from avsr.data.synth.visemes import OPEN, SPREAD, TEETH

FACE_PER_EYES = 2.16  # an average face (jaw to jaw) in eye distances: what Appearance.face_width spans
MAX_TURN = 20.0  # degrees: the largest yaw a sampled speaker reaches (pitch: 60% of it)
BACKGROUNDS = ("original", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "gradient")


@dataclass(frozen=True)
class Appearance:
    """How one synthetic speaker looks and moves; sampled once per speaker.

    The defaults are a still, frontal, evenly lit face at visually lossless quality; the sampled
    speakers turn their heads, stand in uneven or changing light, blur with their motion and
    some are compressed hard, as faces in broadcast corpora are.
    """

    face_width: float = 0.55  # fraction of the frame width an average face spans (2.16 eye distances)
    centre: tuple[float, float] = (0.5, 0.5)  # face centre, fractions of the frame
    mirror: bool = False
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel colour gains (skin, light)
    gamma: float = 1.0
    background: str = "original"
    background_seed: int = 0
    motion: float = 1.0  # head motion amplitude scale (1: about 2 degrees of roll, 2% of the frame)
    motion_seed: int = 0
    yaw: float = 0.0  # amplitude of slow head turns left and right (degrees)
    pitch: float = 0.0  # amplitude of slow nods up and down (degrees)
    pose_centre: tuple[float, float] = (0.0, 0.0)  # the yaw and pitch the head turns about (degrees)
    light: float = 0.0  # directional light: the face's far side from the light is this much darker
    light_angle: float = 0.0  # where the light comes from in the frame (radians, 0: the right)
    light_drift: float = 0.0  # slow dimming over a clip, by up to this fraction
    blur: float = 0.0  # motion blur: shutter open for this fraction of a frame interval (0: none)
    crf: int = 18  # H.264 quality of the speaker's clips (18 visually lossless; 28-35 blocky)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Appearance:
        yaw_centre, pitch_centre = rng.uniform(-6, 6), rng.uniform(-4, 4)
        return cls(
            face_width=float(rng.uniform(0.52, 0.64)),
            centre=(float(rng.uniform(0.45, 0.55)), float(rng.uniform(0.46, 0.56))),
            mirror=bool(rng.integers(2)),
            gains=tuple(float(g) for g in rng.uniform(0.82, 1.15, size=3)),
            gamma=float(rng.uniform(0.8, 1.25)),
            background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
            background_seed=int(rng.integers(2**31)),
            motion=float(rng.uniform(0.3, 1.2)),
            motion_seed=int(rng.integers(2**31)),
            yaw=float(rng.uniform(0.0, MAX_TURN - abs(yaw_centre))),
            pitch=float(rng.uniform(0.0, 0.6 * MAX_TURN - abs(pitch_centre))),
            pose_centre=(float(yaw_centre), float(pitch_centre)),
            light=float(rng.uniform(0.1, 0.3)) if rng.random() < 0.6 else 0.0,
            light_angle=float(rng.uniform(0, 2 * np.pi)),
            light_drift=float(rng.uniform(0.0, 0.1)),
            blur=float(rng.uniform(0.5, 1.0)) if rng.random() < 0.3 else 0.0,
            crf=int(rng.integers(28, 36)) if rng.random() < 0.3 else 18,
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
    """Renders a speaker's video frames from a mouth track of shape (T, 3): open, spread, teeth.

    Per frame: the mouth is posed on the photograph (``MouthRenderer``), the head turned
    (``HeadRenderer``) and framed (an affine: scale, roll, shift, mirror) in one remap of the
    photograph; then colour, light, motion blur and the background. ``seed`` varies the head's
    path between clips of one speaker (the same seed gives the same frames).
    """

    def __init__(self, size: int = 160, rig: FaceRig | None = None) -> None:
        self.size = size
        self.rig = rig or astronaut_rig()
        self.mouth = MouthRenderer(self.rig)
        self.head = HeadRenderer(self.rig)

    def frame_transforms(self, appearance: Appearance, num_frames: int, fps: float, seed: int = 0) -> np.ndarray:
        """(T, 2, 3) turned-photo->frame affine matrices: framing plus slow, smooth head motion."""
        rng = np.random.default_rng((appearance.motion_seed, seed))
        wave = _waves(rng, num_frames, fps, 4, (0.15, 0.8))
        amplitude = appearance.motion
        angle = np.deg2rad(2.0 * amplitude * wave[:, 0])
        shift_x = 0.02 * self.size * amplitude * wave[:, 1]
        shift_y = 0.02 * self.size * amplitude * wave[:, 2]
        zoom = 1.0 + 0.015 * amplitude * wave[:, 3]
        # Framed by the distance between the eyes, not the jaw: a face made wider stays wider.
        scale = appearance.face_width * self.size / (FACE_PER_EYES * eye_distance(self.rig.landmarks)) * zoom
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

    def head_angles(self, appearance: Appearance, num_frames: int, fps: float, seed: int = 0) -> np.ndarray:
        """(T, 2) yaw and pitch in degrees: slow turns (0.04-0.25 Hz) about the speaker's centre."""
        rng = np.random.default_rng((appearance.motion_seed, seed, 1))
        wave = _waves(rng, num_frames, fps, 2, (0.04, 0.25))
        yaw = appearance.pose_centre[0] + appearance.yaw * wave[:, 0]
        pitch = appearance.pose_centre[1] + appearance.pitch * wave[:, 1]
        return np.clip(np.stack([yaw, pitch], axis=1), -POSE_LIMIT, POSE_LIMIT)

    def _light(self, appearance: Appearance, num_frames: int, fps: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(T,) brightness and (T,) light direction (radians) over a clip.

        Light only dims (the photograph's exposure is the brightest it gets): brightening would
        clip the lit side of a face to white, lips and all.
        """
        rng = np.random.default_rng((appearance.motion_seed, seed, 2))
        wave = _waves(rng, num_frames, fps, 2, (0.05, 0.3))
        return 1.0 - appearance.light_drift * (1 + wave[:, 0]) / 2, appearance.light_angle + 0.4 * wave[:, 1]

    def render(self, track: np.ndarray, appearance: Appearance, fps: float = 25.0, seed: int = 0) -> np.ndarray:
        """Frames (T, size, size, 3) uint8 RGB for a mouth track (T, 3)."""
        size = self.size
        count = len(track)
        matrices = self.frame_transforms(appearance, count, fps, seed)
        angles = self.head_angles(appearance, count, fps, seed)
        background = _background(appearance.background, size, appearance.background_seed)
        lut = self._colour_lut(appearance)
        brightness, light_angles = self._light(appearance, count, fps, seed)
        lit = appearance.light > 0 or appearance.light_drift > 0
        # Each frame's posed lips and head map, found once: light and blur need every frame's
        # landmarks before the first frame is drawn, and drawing needs both again.
        poses = [self._pose(pose, angle) for pose, angle in zip(track, angles)]
        landmarks = velocity = None
        if lit or appearance.blur > 0:
            landmarks = self._frame_landmarks(poses, matrices, appearance.mirror)
            velocity = np.gradient(landmarks.mean(axis=1), axis=0) if count > 1 else np.zeros((count, 2))
        face_pixels = appearance.face_width * size
        grid = np.arange(size, dtype=np.float32)
        frames = np.empty((count, size, size, 3), np.uint8)
        for index, pose in enumerate(track):
            points, coarse = poses[index]
            photo, _ = self.mouth.render(float(pose[OPEN]), float(pose[SPREAD]), float(pose[TEETH]), points)
            maps = self.head.frame_maps(coarse, matrices[index], size)
            frame = cv2.LUT(cv2.remap(photo, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), lut)
            alpha = None
            if background is not None:
                alpha = cv2.remap(self.rig.person_mask, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            length = 0.0 if velocity is None else appearance.blur * float(np.linalg.norm(velocity[index]))
            if not lit and length < BLUR_MIN and alpha is None:
                frames[index] = frame
                continue
            layer = frame.astype(np.float32)
            if lit:
                centre = landmarks[index].mean(axis=0)
                direction = np.cos(light_angles[index]), np.sin(light_angles[index])
                along = (grid[None, :] - centre[0]) * direction[0] + (grid[:, None] - centre[1]) * direction[1]
                along /= 0.5 * face_pixels
                layer *= (brightness[index] * (1.0 - appearance.light * (1 - np.tanh(along)) / 2))[..., None]
            if length >= BLUR_MIN:
                kernel = _motion_kernel(velocity[index] * appearance.blur)
                layer = cv2.filter2D(layer, -1, kernel, borderType=cv2.BORDER_REFLECT)
                if alpha is not None:
                    alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
            if alpha is not None:
                layer = alpha[..., None] * layer + (1 - alpha[..., None]) * background
            frames[index] = np.clip(layer, 0, 255).astype(np.uint8)
        return frames

    def posed_landmarks(
        self, track: np.ndarray, appearance: Appearance, fps: float = 25.0, seed: int = 0
    ) -> np.ndarray:
        """(T, 68, 2): where each rendered frame's landmarks truly are (frame pixels)."""
        matrices = self.frame_transforms(appearance, len(track), fps, seed)
        angles = self.head_angles(appearance, len(track), fps, seed)
        poses = [self._pose(pose, angle) for pose, angle in zip(track, angles)]
        return self._frame_landmarks(poses, matrices, appearance.mirror)

    def _pose(self, pose: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame's posed landmarks (68, 2) on the photograph and the head's coarse map for
        its yaw and pitch (``angle``)."""
        points = posed_landmarks(self.rig, float(pose[OPEN]), float(pose[SPREAD]), float(pose[TEETH]))
        return points, self.head.coarse_map(*angle)

    def _frame_landmarks(
        self, poses: list[tuple[np.ndarray, np.ndarray]], matrices: np.ndarray, mirror: bool
    ) -> np.ndarray:
        """(T, 68, 2) frame pixels of the posed landmarks: turned with the head, then framed."""
        out = np.empty((len(poses), 68, 2))
        for index, (points, coarse) in enumerate(poses):
            turned = self.head.locate(points, coarse)
            out[index] = turned @ matrices[index, :, :2].T + matrices[index, :, 2]
        # A mirrored photograph shows a mirrored person: number the points as a landmarker would.
        return out[:, MIRRORED] if mirror else out

    @staticmethod
    def _colour_lut(appearance: Appearance) -> np.ndarray:
        levels = np.arange(256, dtype=np.float64) / 255.0
        curves = [np.clip(gain * levels**appearance.gamma, 0, 1) * 255 for gain in appearance.gains]
        return np.stack(curves, axis=-1).astype(np.uint8).reshape(256, 1, 3)


# iBUG 68-point numbering of a mirrored face: point i of the mirror image is point MIRRORED[i].
MIRRORED = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)
BLUR_MIN = 1.0  # pixels: shorter motion blur is not drawn


def _waves(rng: np.random.Generator, num_frames: int, fps: float, count: int, band: tuple[float, float]) -> np.ndarray:
    """(T, count) smooth random signals in [-1, 1]: two sines each, frequencies in ``band`` (Hz)."""
    times = np.arange(num_frames) / fps
    frequencies = rng.uniform(*band, size=(count, 2))
    phases = rng.uniform(0, 2 * np.pi, size=(count, 2))
    return np.sin(2 * np.pi * frequencies[None] * times[:, None, None] + phases[None]).sum(-1) / 2


def _motion_kernel(displacement: np.ndarray) -> np.ndarray:
    """A normalised line kernel along ``displacement`` (x, y pixels), centred: the smear of a
    point moving that far while the shutter is open."""
    length = float(np.linalg.norm(displacement))
    half = int(np.ceil(length / 2)) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    steps = max(2 * int(np.ceil(length)) + 1, 3)
    for t in np.linspace(-0.5, 0.5, steps):
        x, y = half + t * displacement[0], half + t * displacement[1]
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return kernel / kernel.sum()
