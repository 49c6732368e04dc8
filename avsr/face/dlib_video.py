"""dlib landmarks for video: detect rarely, on a small image; track in between.

dlib's HOG face detector costs 5-20 ms a frame on 640x480 video; its shape predictor costs under
1 ms given a face box. So a video is landmarked like this:

* to find a face (first frame, or after losing it) the detector runs on a grayscale copy shrunk
  to ``detect_width`` pixels wide, with no upsampling first and more (up to ``upsample``) only if
  that finds nothing; the largest face wins;
* on the next frames the predictor runs inside a box placed from the previous frame's landmarks
  (the box is calibrated against the detector's own box at the last detection, because the
  predictor was trained on detector boxes);
* every ``detect_every`` frames the detector confirms the face in a small region around the
  track, scaled so the face is about 90 px (cheap, and it resets the box's scale and position);
* the track is dropped, and the detector searches the whole frame, when the box leaves the frame,
  the landmarks' size or position jumps implausibly, or the face stops looking like the face at
  the last detection (normalised correlation of a 24x24 thumbnail below ``min_similarity``: this
  is what notices a face blacked out or covered, where the predictor still returns a shape).

``track=False`` runs the detector on every frame: the baseline of ``benchmarks/face_crop.py``.
Landmarks are always predicted on the full-resolution grayscale frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from avsr.face.dlib_landmarker import face_detector, shape_predictor, shape_to_array

if TYPE_CHECKING:
    from avsr.face.tracks import FaceTrack

RIGID = slice(17, 48)  # brows, nose and eyes: they do not move when the mouth does
THUMBNAIL = 24  # side of the appearance thumbnail
ROI_FACE = 90.0  # face box size (px) the confirmation region is scaled to (detector window: 80)
ROI_MARGIN = 1.6  # confirmation region side, in face boxes
MAX_SCALE_STEP = 1.4  # landmark size may change by at most this factor from one frame to the next
MAX_SHIFT = 1.0  # ... and move by at most this many landmark radii


Box = tuple[float, float, float, float]  # left, top, right, bottom (pixels, float)


@dataclass
class TrackingStats:
    """How a video was landmarked (``DlibVideoLandmarker.last_stats``)."""

    frames: int = 0
    full_detections: int = 0  # detector runs on the whole (shrunk) frame
    region_detections: int = 0  # detector runs on the small region around the track
    tracked: int = 0  # frames landmarked from the previous frame's box
    lost: int = 0  # track dropped (box off frame, implausible jump, appearance changed)
    missing: int = 0  # frames with no landmarks

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Track:
    points: np.ndarray  # (68, 2) landmarks of the last frame
    offset: np.ndarray  # detector box centre minus rigid centroid, in rigid radii
    size: float  # detector box side, in rigid radii
    template: np.ndarray  # appearance thumbnail at the last detection (zero mean, unit norm)
    since_detection: int = 0


def to_gray(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grayscale of an RGB (H, W, 3) or grayscale (H, W) uint8 frame."""
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grayscale frame, not shape {frame.shape}")


def _rigid_frame(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and RMS radius of the rigid landmarks."""
    rigid = points[RIGID].astype(np.float64)
    centre = rigid.mean(axis=0)
    return centre, float(np.sqrt(((rigid - centre) ** 2).sum(axis=1).mean()))


def _iou(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _thumbnail(gray: np.ndarray, box: Box) -> np.ndarray | None:
    """Zero-mean, unit-norm THUMBNAIL^2 vector of the box, or None if the box is mostly off frame."""
    height, width = gray.shape
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if (x1 - x0) * (y1 - y0) < 0.5 * (box[2] - box[0]) * (box[3] - box[1]) or x1 - x0 < 8 or y1 - y0 < 8:
        return None
    small = cv2.resize(gray[y0:y1, x0:x1], (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    vector = small.astype(np.float32).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    # A flat patch (blacked out, covered) has no pattern to correlate with: similarity 0.
    return vector / norm if norm > 1e-3 * THUMBNAIL else np.zeros_like(vector)


class DlibVideoLandmarker:
    """68-point landmarks per frame with dlib, tracking between sparse detections (see module doc).

    ``detect_every``: frames between detector confirmations while tracking. ``detect_width``: frames
    wider than this are shrunk to it for detection. ``upsample``: the most pyramid upsampling
    tried when nothing is found without (0 finds faces of about 80 px in the shrunk image, 1 of
    about 40 px). ``min_similarity``: appearance correlation below which the track is dropped.
    Not thread-safe: use one instance per thread (the predictor model itself is shared).
    """

    def __init__(
        self,
        *,
        track: bool = True,
        detect_every: int = 10,
        detect_width: int = 320,
        upsample: int = 1,
        min_similarity: float = 0.5,
    ) -> None:
        import dlib

        if detect_every < 1 or detect_width < 80 or upsample < 0:
            raise ValueError("detect_every must be >= 1, detect_width >= 80 and upsample >= 0")
        self.track = track
        self.detect_every = detect_every
        self.detect_width = detect_width
        self.upsample = upsample
        self.min_similarity = min_similarity
        self._dlib = dlib
        self._detector = face_detector()
        self._predictor = shape_predictor()
        self.last_stats = TrackingStats()

    # -- public ---------------------------------------------------------------------------------

    def landmarks(self, frames: Iterable[np.ndarray]) -> list[np.ndarray | None]:
        """One (68, 2) float32 array or None per frame (RGB or grayscale uint8 frames)."""
        return list(self.iter_landmarks(frames))

    def iter_landmarks(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
        """Streaming form of :meth:`landmarks`: one frame in, one result out."""
        stats = self.last_stats = TrackingStats()
        track: _Track | None = None
        for frame in frames:
            stats.frames += 1
            gray = to_gray(frame)
            if self.track and track is not None:
                track = self._follow(gray, track, stats)
            else:
                track = self._acquire(gray, None, stats)
            if track is None:
                stats.missing += 1
                yield None
            else:
                yield track.points.copy()

    def tracks(self, frames: Iterable[np.ndarray], find_every: int = 25) -> list[FaceTrack]:
        """Every face through the video, each kept as one person across detections
        (:func:`avsr.face.tracks.track_faces`; ``find_every``: frames between searches for new faces)."""
        from avsr.face.tracks import track_faces

        return track_faces(self, frames, find_every=find_every)

    def detect(self, gray: np.ndarray, near: Box | None = None) -> Box | None:
        """The face box in a grayscale frame: the one overlapping ``near`` most, else the largest."""
        return _choose(self.detect_all(gray), near)

    def detect_all(self, gray: np.ndarray, every_size: bool = False) -> list[Box]:
        """Every face box the detector finds in a grayscale frame, upsampling only if none is found;
        ``every_size``: at every upsampling level, so that small faces beside large ones are found
        too (overlapping finds of one face kept once)."""
        height, width = gray.shape
        scale = min(1.0, self.detect_width / width)
        small = (
            gray
            if scale == 1.0
            else cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        )
        boxes: list[Box] = []
        for upsample in range(self.upsample + 1):
            for r in self._detector(small, upsample):
                box = (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale)
                if all(_iou(box, other) <= 0.3 for other in boxes):
                    boxes.append(box)
            if boxes and not every_size:
                break
        return boxes

    def predict(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """Landmarks of the face in ``box`` (the predictor always answers, face or not)."""
        rect = self._dlib.rectangle(round(box[0]), round(box[1]), round(box[2]) - 1, round(box[3]) - 1)
        return shape_to_array(self._predictor(gray, rect))

    # -- tracking -------------------------------------------------------------------------------

    def _acquire(
        self, gray: np.ndarray, near: Box | None, stats: TrackingStats, box: Box | None = None
    ) -> _Track | None:
        """Start a track from a detection (searching the whole frame unless ``box`` is given)."""
        if box is None:
            stats.full_detections += 1
            box = self.detect(gray, near)
            if box is None:
                return None
        points = self.predict(gray, box)
        if not self.track:
            return _Track(points, np.zeros(2), 0.0, np.zeros(0))
        centre, radius = _rigid_frame(points)
        radius = max(radius, 1e-3)
        box_centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        template = _thumbnail(gray, box)
        return _Track(
            points=points,
            offset=(box_centre - centre) / radius,
            size=(box[2] - box[0]) / radius,
            template=template if template is not None else np.zeros(THUMBNAIL * THUMBNAIL, np.float32),
        )

    def _box_from(self, track: _Track, points: np.ndarray) -> Box:
        centre, radius = _rigid_frame(points)
        cx, cy = centre + track.offset * radius
        half = track.size * radius / 2
        return (cx - half, cy - half, cx + half, cy + half)

    def _follow(self, gray: np.ndarray, track: _Track, stats: TrackingStats, *, search: bool = True) -> _Track | None:
        """The track one frame on. A lost track is searched for in the whole frame (``search``),
        or only around where it was (several faces: the largest elsewhere would be another person)."""
        height, width = gray.shape
        box = self._box_from(track, track.points)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not (0 <= cx < width and 0 <= cy < height) or box[2] - box[0] < 16:
            stats.lost += 1
            return self._acquire(gray, box, stats) if search else None
        track.since_detection += 1
        if track.since_detection >= self.detect_every:
            stats.region_detections += 1
            found = self._detect_near(gray, box)
            if found is not None:
                return self._acquire(gray, box, stats, box=found)
            # The detector can miss a face it found a moment ago; the appearance check below decides.
        points = self.predict(gray, box)
        previous_centre, previous_radius = _rigid_frame(track.points)
        centre, radius = _rigid_frame(points)
        step = radius / max(previous_radius, 1e-3)
        plausible = (
            1 / MAX_SCALE_STEP <= step <= MAX_SCALE_STEP
            and np.linalg.norm(centre - previous_centre) <= MAX_SHIFT * previous_radius
        )
        thumbnail = _thumbnail(gray, box) if plausible else None
        if thumbnail is None or float(thumbnail @ track.template) < self.min_similarity:
            stats.lost += 1
            if search:
                return self._acquire(gray, box, stats)
            found = self._detect_near(gray, box)
            return None if found is None else self._acquire(gray, box, stats, box=found)
        stats.tracked += 1
        track.points = points
        return track

    def _detect_near(self, gray: np.ndarray, box: Box) -> Box | None:
        """Detector run on a region around ``box``, scaled so the face is about ROI_FACE px."""
        height, width = gray.shape
        side = box[2] - box[0]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = ROI_MARGIN * side / 2
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(int(np.ceil(cx + half)), width), min(int(np.ceil(cy + half)), height)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        scale = ROI_FACE / side
        region = gray[y0:y1, x0:x1]
        size = (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        rects = self._detector(region, 0)
        boxes = [
            (x0 + r.left() / scale, y0 + r.top() / scale, x0 + (r.right() + 1) / scale, y0 + (r.bottom() + 1) / scale)
            for r in rects
        ]
        chosen = _choose(boxes, box)
        return chosen if chosen is not None and _iou(chosen, box) > 0.3 else None


def _choose(boxes: list[Box], near: Box | None) -> Box | None:
    if not boxes:
        return None
    if near is not None:
        best = max(boxes, key=lambda b: _iou(b, near))
        if _iou(best, near) > 0.3:
            return best
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
