"""Several faces in one video: each followed as one person (FaceChain.face_tracks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsr.face import FaceChain, FaceTrack
from avsr.face.tracks import median_box
from avsr.media import read_video


@pytest.fixture(scope="module")
def chain() -> FaceChain:
    return FaceChain.dlib()


@pytest.fixture(scope="module")
def scene_frames(scenes_corpus: Path) -> np.ndarray:
    return read_video(scenes_corpus / "scenes" / "00001.mp4", with_audio=False).frames


def inside(box, panel: int) -> bool:
    x, y, w, h = box
    return panel * 160 <= x + w / 2 < (panel + 1) * 160


def test_two_people_side_by_side_are_two_tracks_left_to_right(chain, scene_frames):
    tracks = chain.face_tracks(scene_frames)
    assert len(tracks) == 2
    for panel, track in enumerate(tracks):
        assert track.landmarks.shape == (len(scene_frames), 68, 2)
        assert track.found.mean() > 0.95
        seen = np.flatnonzero(track.found)
        assert all(inside(median_box(track.boxes[t : t + 1]), panel) for t in seen)


def test_a_face_covered_for_a_while_keeps_its_number(chain, scene_frames):
    frames = scene_frames.copy()
    frames[20:45, :, :160] = 90  # the left person hidden for a second
    tracks = chain.face_tracks(frames)
    assert len(tracks) == 2
    left, right = tracks
    assert not left.found[25:40].any() and left.found[60:].mean() > 0.9
    assert right.found.mean() > 0.95
    assert inside(left.box(), 0) and inside(right.box(), 1)


def test_a_flicker_is_not_a_person(chain, scene_frames):
    frames = scene_frames.copy()
    frames[:, :, 160:] = 90  # only the left person, except for three frames
    frames[50:53, :, 160:] = scene_frames[50:53, :, 160:]
    tracks = chain.face_tracks(frames)
    assert len(tracks) == 1 and inside(tracks[0].box(), 0)


def test_a_blank_video_has_no_tracks(chain):
    assert chain.face_tracks(np.full((12, 120, 160, 3), 128, np.uint8)) == []


def test_a_one_face_landmark_list_is_one_track():
    points = np.tile(np.arange(68, dtype=np.float32)[:, None], (1, 2))
    track = FaceTrack.from_landmarks([points, None, points + 10])
    assert track.found.tolist() == [True, False, True]
    assert track.boxes[0].tolist() == [0, 0, 67, 67] and np.isnan(track.boxes[1]).all()
    assert track.box() == (5, 5, 67, 67)
    assert track.landmark_list()[1] is None
