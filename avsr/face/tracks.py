"""Every face in a video, each followed as one person: :class:`FaceTrack` and :func:`track_faces`.

A recording of an interview or a meeting shows several faces. Each is followed with the same
machinery as the one face of :class:`~avsr.face.DlibVideoLandmarker` (the predictor placed from the
previous frame's landmarks, the detector confirming it near the track every ``detect_every``
frames), except that a lost face is searched for only where it was: the largest face elsewhere
would be somebody else. Every ``find_every`` frames (and on every frame while no face is followed)
the detector searches the whole frame, at every scale (a small face beside a large one), for
faces nobody follows yet; a face found where a lost one
was last seen continues that person's track, so a face that is covered for a moment keeps its number.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from avsr.face.dlib_video import Box, DlibVideoLandmarker

#: a face found within this many box sides of a lost track's last box continues that track
REVIVE_DISTANCE = 0.75
#: a track with fewer frames of its own than this is a false detection, dropped
MIN_TRACK_FRAMES = 5


@dataclass
class FaceTrack:
    """One person's face through a video.

    ``landmarks``: (T, 68, 2) float32 pixel coordinates, NaN in frames where the face was not found;
    ``boxes``: (T, 4) float32 left, top, right, bottom, NaN likewise.
    """

    landmarks: np.ndarray
    boxes: np.ndarray

    @classmethod
    def from_landmarks(cls, landmarks: Sequence[np.ndarray | None]) -> FaceTrack:
        """The track of a one-face landmarker's output (per frame (68, 2) or None); the box spans
        the landmarks."""
        points = np.full((len(landmarks), 68, 2), np.nan, np.float32)
        for index, frame in enumerate(landmarks):
            if frame is not None:
                points[index] = frame
        with warnings.catch_warnings():  # frames without a face are all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            boxes = np.concatenate([np.nanmin(points, axis=1), np.nanmax(points, axis=1)], axis=1)
        return cls(points, boxes.astype(np.float32))

    @property
    def found(self) -> np.ndarray:
        """(T,) bool: the frames where this face was found."""
        return ~np.isnan(self.boxes[:, 0])

    def landmark_list(self) -> list[np.ndarray | None]:
        """Per frame (68, 2) or None, as :meth:`FaceChain.crop` takes them."""
        return [points if ok else None for points, ok in zip(self.landmarks, self.found)]

    def box(self, start: int = 0, end: int | None = None) -> tuple[int, int, int, int] | None:
        """The face's median box over frames ``start``..``end`` (:func:`median_box`)."""
        return median_box(self.boxes[start:end])


def median_box(boxes: np.ndarray) -> tuple[int, int, int, int] | None:
    """The median of (T, 4) left, top, right, bottom boxes (NaN rows: not seen) as (x, y, width,
    height) whole pixels, or None when no row is seen."""
    seen = boxes[~np.isnan(boxes[:, 0])]
    if not len(seen):
        return None
    left, top, right, bottom = np.median(seen, axis=0)
    return round(float(left)), round(float(top)), round(float(right - left)), round(float(bottom - top))


@runtime_checkable
class FaceTracker(Protocol):
    """A landmarker that follows every face, not only the largest (``DlibVideoLandmarker``)."""

    def tracks(self, frames: Iterable[np.ndarray]) -> list[FaceTrack]: ...


@dataclass
class _Person:
    number: int
    state: object | None  # the landmarker's _Track while followed, None while lost
    box: Box  # last box seen
    landmarks: dict[int, np.ndarray]
    boxes: dict[int, Box]


def track_faces(
    landmarker: DlibVideoLandmarker, frames: Iterable[np.ndarray], *, find_every: int = 25
) -> list[FaceTrack]:
    """Every face of ``frames`` (RGB or grayscale uint8), followed through the video.

    Tracks are ordered by their first frame, then left to right; a track found in fewer than
    ``MIN_TRACK_FRAMES`` frames (a false detection) is dropped. ``landmarker.last_stats`` counts
    the work for all faces together.
    """
    from avsr.face.dlib_video import TrackingStats, _iou, to_gray

    if find_every < 1:
        raise ValueError("find_every must be at least 1")
    stats = landmarker.last_stats = TrackingStats()
    people: list[_Person] = []
    count = 0
    for index, frame in enumerate(frames):
        count += 1
        stats.frames += 1
        gray = to_gray(frame)
        followed = []
        for person in people:
            if person.state is None:
                continue
            person.state = landmarker._follow(gray, person.state, stats, search=False)
            if person.state is not None:
                followed.append(person)
        if not followed or index % find_every == 0:
            stats.full_detections += 1
            taken = [landmarker._box_from(p.state, p.state.points) for p in followed]
            for box in sorted(landmarker.detect_all(gray, every_size=True), key=_area, reverse=True):
                if any(_iou(box, other) > 0.3 for other in taken):
                    continue
                person = _lost_near(people, box) or _Person(len(people), None, box, {}, {})
                if person.number == len(people):
                    people.append(person)
                person.state = landmarker._acquire(gray, None, stats, box=box)
                taken.append(box)
                followed.append(person)
        for person in followed:
            person.box = landmarker._box_from(person.state, person.state.points)
            person.landmarks[index] = person.state.points.copy()
            person.boxes[index] = person.box
        if not followed:
            stats.missing += 1
    tracks = [_as_track(person, count) for person in people if len(person.landmarks) >= MIN_TRACK_FRAMES]
    return sorted(tracks, key=lambda t: (int(np.argmax(t.found)), float(np.nanmedian(t.boxes[:, 0]))))


def _lost_near(people: list[_Person], box: Box) -> _Person | None:
    """The lost person whose last box is nearest ``box``, if within REVIVE_DISTANCE box sides."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    best, best_distance = None, np.inf
    for person in people:
        if person.state is not None:
            continue
        last = np.array([(person.box[0] + person.box[2]) / 2, (person.box[1] + person.box[3]) / 2])
        side = max(box[2] - box[0], person.box[2] - person.box[0])
        distance = float(np.linalg.norm(centre - last)) / side
        if distance < min(best_distance, REVIVE_DISTANCE):
            best, best_distance = person, distance
    return best


def _area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _as_track(person: _Person, count: int) -> FaceTrack:
    landmarks = np.full((count, 68, 2), np.nan, np.float32)
    boxes = np.full((count, 4), np.nan, np.float32)
    for index, points in person.landmarks.items():
        landmarks[index] = points
        boxes[index] = person.boxes[index]
    return FaceTrack(landmarks, boxes)


__all__ = ["MIN_TRACK_FRAMES", "FaceTrack", "FaceTracker", "median_box", "track_faces"]
