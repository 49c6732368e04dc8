"""Faces and mouths: dlib landmarks (tracked and per frame), gap filling, smoothing, alignment, crops,
precomputed landmark files (and refusing unsafe pickles).

The video is the synthetic talking face padded into 640x480 frames; its true landmarks come from
the renderer (``TalkingFace.posed_landmarks``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from avsr.data.synth.face import Appearance, TalkingFace
from avsr.face import (
    MOUTH,
    DlibVideoLandmarker,
    FaceAlignmentError,
    FaceChain,
    LandmarksFileError,
    MouthCropConfig,
    MouthCropper,
    NoFaceError,
    PrecomputedLandmarks,
    VideoLandmarker,
    default_mean_face,
    fill_missing,
    fill_with_mask,
    load_landmarks_file,
    save_landmarks,
    smooth_landmarks,
    smooth_landmarks_ahead,
)
from avsr.face.align import fit_similarity

FRAMES = 36
WIDTH, HEIGHT, FACE_SIZE = 640, 480, 400
BLACKED = range(12, 19)  # frames whose face is blacked out in the partial clip


def _map(points: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(T, P, 2) points through (T, 2, 3) transforms."""
    return np.einsum("tij,tpj->tpi", transforms[:, :, :2], points) + transforms[:, None, :, 2]


def _black_out_face(frame: np.ndarray, truth: np.ndarray) -> np.ndarray:
    frame = frame.copy()
    low, high = truth.min(axis=0), truth.max(axis=0)
    margin = 0.25 * (high - low)
    x0, y0 = np.maximum(low - margin, 0).astype(int)
    x1, y1 = (high + margin).astype(int)
    frame[y0:y1, x0:x1] = 0
    return frame


@pytest.fixture(scope="session")
def clip() -> tuple[np.ndarray, np.ndarray]:
    """(T, 480, 640, 3) RGB frames of a talking, moving head and its (T, 68, 2) true landmarks."""
    t = np.arange(FRAMES) / 25.0
    track = np.stack(
        [np.clip(0.45 + 0.45 * np.sin(2 * np.pi * 1.7 * t), 0, 1), 0.5 * np.sin(2 * np.pi * 0.6 * t), np.zeros(FRAMES)],
        axis=1,
    )
    appearance = Appearance(face_width=0.45, centre=(0.5, 0.5), background="coffee", motion=1.2, motion_seed=7)
    face = TalkingFace(size=FACE_SIZE)
    square = face.render(track, appearance)
    left = (WIDTH - FACE_SIZE) // 2
    top = (HEIGHT - FACE_SIZE) // 2
    frames = np.stack(
        [
            cv2.copyMakeBorder(f, top, HEIGHT - FACE_SIZE - top, left, WIDTH - FACE_SIZE - left, cv2.BORDER_REFLECT_101)
            for f in square
        ]
    )
    return frames, face.posed_landmarks(track, appearance) + (left, top)


@pytest.fixture(scope="session")
def tracked(clip) -> tuple[list, dict]:
    landmarker = DlibVideoLandmarker(track=True, detect_every=8)
    found = landmarker.landmarks(clip[0])
    return found, landmarker.last_stats.as_dict()


@pytest.fixture(scope="session")
def per_frame(clip) -> list:
    return DlibVideoLandmarker(track=False).landmarks(clip[0])


@pytest.fixture(scope="session")
def partial_clip(clip) -> np.ndarray:
    frames, truth = clip
    frames = frames.copy()
    for index in BLACKED:
        frames[index] = _black_out_face(frames[index], truth[index])
    return frames


# -- landmarks ----------------------------------------------------------------------------------


def test_tracking_and_per_frame_detection_agree_with_each_other_and_the_truth(clip, tracked, per_frame):
    _, truth = clip
    found, stats = tracked
    assert isinstance(DlibVideoLandmarker(), VideoLandmarker)
    assert all(f is not None and f.shape == (68, 2) and f.dtype == np.float32 for f in found)
    assert all(f is not None for f in per_frame)
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in clip[0][:4]]
    np.testing.assert_array_equal(np.stack(DlibVideoLandmarker().landmarks(gray)), np.stack(found[:4]))
    between = np.array([np.linalg.norm(a - b, axis=1).mean() for a, b in zip(found, per_frame)])
    assert between.mean() < 2.0 and between.max() < 4.0, between
    for landmarks in (found, per_frame):
        error = np.array([np.linalg.norm(f - t, axis=1).mean() for f, t in zip(landmarks, truth)])
        assert error.mean() < 4.0 and error.max() < 6.0, error
    # It did track: one full-frame detection, a few confirmations, the rest from the previous frame.
    assert stats["full_detections"] == 1 and stats["lost"] == 0
    assert stats["tracked"] >= FRAMES - FRAMES // 8 - 1


def test_tracking_notices_a_blacked_out_face_at_once(partial_clip):
    for track in (True, False):
        found = DlibVideoLandmarker(track=track, detect_every=8).landmarks(partial_clip)
        missing = [index for index, f in enumerate(found) if f is None]
        assert missing == list(BLACKED), (track, missing)


# -- gap filling and smoothing -------------------------------------------------------------------


def test_fill_missing_interpolates_gaps_and_holds_the_ends():
    a, b, c = (np.full((68, 2), value, np.float32) for value in (10.0, 20.0, 50.0))
    filled, present = fill_with_mask([None, a, None, None, b, c, None])
    assert filled.shape == (7, 68, 2)
    assert present.tolist() == [False, True, False, False, True, True, False]
    np.testing.assert_allclose(filled[:, 0, 0], [10, 10, 10 + 10 / 3, 10 + 20 / 3, 20, 50, 50])
    # The same from an array with NaN frames (our .npy form).
    as_array = np.stack(
        [
            np.full((68, 2), np.nan),
            a,
            np.full((68, 2), np.nan),
            np.full((68, 2), np.nan),
            b,
            c,
            np.full((68, 2), np.nan),
        ]
    )
    np.testing.assert_allclose(fill_missing(as_array), filled)
    np.testing.assert_allclose(fill_missing([a]), a[None])
    with pytest.raises(NoFaceError, match="no face found in any of the 3 frames"):
        fill_missing([None, None, None])
    with pytest.raises(NoFaceError):
        fill_missing(np.full((4, 68, 2), np.nan))


def test_smoothing_is_a_shrinking_centred_mean_that_keeps_each_frames_centroid():
    rng = np.random.default_rng(0)
    landmarks = rng.normal(100, 5, size=(20, 68, 2))
    smoothed = smooth_landmarks(landmarks, window=12)
    for t in range(len(landmarks)):  # auto_avsr's per-frame loop, written out
        margin = min(6, t, len(landmarks) - 1 - t)
        expected = landmarks[t - margin : t + margin + 1].mean(axis=0)
        expected += landmarks[t].mean(axis=0) - expected.mean(axis=0)
        np.testing.assert_allclose(smoothed[t], expected, atol=1e-9)
    np.testing.assert_allclose(smoothed[0], landmarks[0])  # the window shrinks to the frame itself
    np.testing.assert_allclose(smooth_landmarks(landmarks, window=0), landmarks)
    still = np.repeat(landmarks[:1], 9, axis=0)
    np.testing.assert_allclose(smooth_landmarks(still), still)


# -- alignment and crops --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [96, 120])
def test_crop_is_centred_on_the_mouth(clip, tracked, size):
    frames, truth = clip
    crops = FaceChain(None, MouthCropConfig(crop_size=size))(frames, tracked[0])
    assert crops.crops.shape == (FRAMES, size, size) and crops.crops.dtype == np.uint8
    assert crops.transforms.shape == (FRAMES, 2, 3) and crops.mouth_points.shape == (FRAMES, 20, 2)
    assert crops.detected.all()
    true_mouth = _map(truth[:, MOUTH], crops.transforms)
    assert (true_mouth > 0).all() and (true_mouth < size - 1).all()
    centre = true_mouth.mean(axis=1)
    assert np.abs(centre - size / 2).max() < 0.08 * size, centre
    # Aligned to the mean face: the eyes are as far apart in every frame, and about as far as in
    # the mean face (the fit also pulls the mouth corners towards the mean face's).
    eyes = _map(truth[:, [36, 45]], crops.transforms)
    span = np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1)
    mean_face = np.load(default_mean_face())
    assert span.std() < 0.03 * span.mean()
    assert abs(span.mean() / np.linalg.norm(mean_face[45] - mean_face[36]) - 1) < 0.15, span
    assert np.abs(crops.mouth_points - true_mouth).mean() < 4.0
    # The mouth is dark inside lighter lips and skin: the crop is not a blank or off-face patch.
    assert crops.crops.std() > 10


def test_fast_warp_gives_the_pixels_of_warping_the_whole_aligned_frame(clip, tracked):
    frames, _ = clip
    cropper = MouthCropper()
    crops = cropper.crop(frames, tracked[0])
    smoothed = smooth_landmarks(fill_missing(tracked[0]))
    reference = np.stack([cropper.crop_on_canvas(frame, points) for frame, points in zip(frames, smoothed)])
    assert reference.shape == crops.crops.shape
    difference = np.abs(reference.astype(int) - crops.crops.astype(int))
    assert difference.max() <= 3 and (difference > 0).mean() < 0.01, (difference.max(), (difference > 0).mean())


def test_a_video_with_no_face_raises_no_face_error(clip):
    frames, truth = clip
    blank = np.stack([_black_out_face(f, t) for f, t in zip(frames[:12], truth[:12])])
    with pytest.raises(NoFaceError) as caught:
        FaceChain(DlibVideoLandmarker())(blank, source="clip.mp4")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    assert message.startswith("clip.mp4: ") and "no face" in message


def test_frames_without_a_face_are_interpolated_and_reported(partial_clip, clip):
    _, truth = clip
    crops = FaceChain(DlibVideoLandmarker())(partial_clip)
    assert crops.crops.shape == (FRAMES, 96, 96)
    assert np.flatnonzero(~crops.detected).tolist() == list(BLACKED)
    true_mouth = _map(truth[:, MOUTH], crops.transforms)
    assert np.abs(true_mouth.mean(axis=1) - 48).max() < 10  # interpolated frames still find the mouth


def test_crop_is_full_size_where_it_leaves_the_frame(clip):
    frames, truth = clip
    # Cut the frames just below the mouth: the lower part of the crop lies beyond the image.
    bottom = int(truth[:6, MOUTH, 1].max()) + 4
    cut = np.ascontiguousarray(frames[:6, :bottom])
    replicated = MouthCropper().crop(cut, truth[:6])
    black = MouthCropper(MouthCropConfig(border="constant")).crop(cut, truth[:6])
    assert replicated.crops.shape == black.crops.shape == (6, 96, 96)
    # Where each crop pixel comes from in the cut frame.
    grid = np.stack(np.meshgrid(np.arange(96.0), np.arange(96.0)), axis=-1).reshape(-1, 2)
    for crop, fill, transform in zip(replicated.crops, black.crops, replicated.transforms):
        inverse = cv2.invertAffineTransform(transform)
        source_y = (grid @ inverse[:, :2].T + inverse[:, 2])[:, 1].reshape(96, 96)
        beyond, inside = source_y > bottom + 1, source_y < bottom - 2
        assert beyond.mean() > 0.1
        assert (fill[beyond] == 0).all() and crop[beyond].mean() > 20  # edge pixels repeated, not black
        assert (crop[inside] == fill[inside]).all()


def test_landmarks_that_put_the_mouth_far_off_are_refused(clip):
    frames, truth = clip
    wrong = truth[:3].copy()
    wrong[:, MOUTH] += (0, 400)  # mouth far below the eyes: fitted transform sends it off the aligned face
    wrong[:, [48, 54]] -= (0, 400)  # ... while the stable mouth corners stay put
    with pytest.raises(FaceAlignmentError, match="too far"):
        MouthCropper().crop(frames[:3], wrong)
    assert MouthCropper(MouthCropConfig(centre_tolerance=None)).crop(frames[:3], wrong).crops.shape == (3, 96, 96)


# -- AV-HuBERT's alignment ------------------------------------------------------------------------


def test_least_squares_fit_is_skimages_similarity_transform():
    from skimage import transform as tf

    rng = np.random.default_rng(1)
    for _ in range(20):
        source, target = rng.normal(200, 50, size=(5, 2)), rng.normal(128, 30, size=(5, 2))
        expected = tf.estimate_transform("similarity", source, target).params[:2]
        np.testing.assert_allclose(fit_similarity(source, target), expected, atol=1e-9)
    with pytest.raises(FaceAlignmentError, match="coincide"):
        fit_similarity(np.ones((5, 2)), target)


def test_smoothing_ahead_averages_the_next_frames_and_holds_the_tail():
    landmarks = np.random.default_rng(2).normal(100, 5, size=(20, 68, 2))
    smoothed = smooth_landmarks_ahead(landmarks, window=12)
    for t in range(20):
        start = min(t, 20 - 12)  # the last 11 frames reuse frame 8's window
        np.testing.assert_allclose(smoothed[t], landmarks[start : start + 12].mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(
        smooth_landmarks_ahead(landmarks[:5], window=12), np.repeat(landmarks[:5].mean(axis=0, keepdims=True), 5, 0)
    )
    np.testing.assert_allclose(smooth_landmarks_ahead(landmarks, window=1), landmarks)


def avhubert_reference_crops(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """AV-HuBERT's align_mouth.py steps written with skimage, as it does them: smooth over the frame
    and the 11 ahead, least-squares similarity on points 33/36/39/42/45, warp the colour frame to
    256 x 256 (black outside, values truncated to uint8), 96 px box on the frame's own mouth kept
    inside the frame, then grey."""
    from skimage import transform as tf

    mean_face = np.load(default_mean_face())
    stable, count = [33, 36, 39, 42, 45], len(frames)
    window = min(12, count)
    crops = []
    for t in range(count):
        start = min(t, count - window)
        smoothed = landmarks[start : start + window].mean(axis=0)
        transform = tf.estimate_transform("similarity", smoothed[stable], mean_face[stable])
        warped = (tf.warp(frames[t], inverse_map=transform.inverse, output_shape=(256, 256)) * 255).astype(np.uint8)
        centre_x, centre_y = np.clip(transform(landmarks[t][MOUTH]).mean(axis=0), 48, 256 - 48)
        top, left = int(round(centre_y) - 48), int(round(centre_x) - 48)
        crops.append(cv2.cvtColor(warped[top : top + 96, left : left + 96], cv2.COLOR_RGB2GRAY))
    return np.stack(crops)


def test_avhubert_style_crops_are_avhuberts(clip):
    frames, truth = clip
    reference = avhubert_reference_crops(frames, truth).astype(int)
    ours = MouthCropper(MouthCropConfig.for_style("avhubert")).crop(frames, truth).crops.astype(int)
    difference = ours - reference
    # Interpolation rounding only: skimage truncates where OpenCV rounds (half a grey level), and
    # OpenCV's bilinear weights are fixed-point (1/32), off by up to a 64th of the step across a
    # sharp edge (teeth against the dark mouth: a few pixels reach 3 levels).
    outliers = (np.abs(difference) > 2).mean()
    assert np.abs(difference).max() <= 3 and outliers < 1e-4 and 0.3 < difference.mean() < 0.7, (
        np.abs(difference).max(),
        outliers,
        difference.mean(),
    )
    auto_avsr = MouthCropper().crop(frames, truth).crops.astype(int)
    assert np.abs(auto_avsr - reference).mean() > 3  # the other alignment gives other crops


def test_mouth_crop_settings_round_trip_through_model_metadata():
    avhubert = MouthCropConfig.for_style("avhubert", crop_size=100)
    recorded = avhubert.to_dict()
    assert recorded["mean_face"] == "20words_mean_face.npy" and recorded["stable_points"] == [33, 36, 39, 42, 45]
    assert MouthCropConfig.from_mapping(recorded) == avhubert
    assert MouthCropConfig.from_mapping({"style": "avhubert"}) == MouthCropConfig.for_style("avhubert")
    assert MouthCropConfig.from_mapping({}) == MouthCropConfig()
    with pytest.raises(ValueError, match="unknown mouth-crop settings: wobble"):
        MouthCropConfig.from_mapping({"wobble": 1})
    with pytest.raises(ValueError, match="fit must be one of"):
        MouthCropConfig(fit="ransac")
    with pytest.raises(ValueError, match="unknown mouth-crop style"):
        MouthCropConfig.for_style("lipnet")


def test_mean_face_ships_with_its_origin():
    mean_face = np.load(default_mean_face())
    assert mean_face.shape == (68, 2)
    folder = default_mean_face().parent
    assert "182b62837773ab01052d4ac21ef1d2203ea7d267" in (folder / "README.md").read_text()
    assert "Apache License" in (folder / "LICENSE").read_text()


# -- precomputed landmarks ------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_precomputed_reads_auto_avsr_pickles(tmp_path, clip, protocol):
    frames, truth = clip
    stored = [truth[i].astype(np.float64) if i % 5 else None for i in range(6)]
    stored[2] = truth[2].astype(np.int64)  # whole-pixel landmarks also occur
    path = tmp_path / "main" / "5535415699068794046" / "00001.pkl"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:
        pickle.dump(stored, handle, protocol=protocol)
    loaded = load_landmarks_file(path)
    assert [f is None for f in loaded] == [f is None for f in stored]
    for got, want in zip(loaded, stored):
        if want is not None:
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=1e-3)
    source = PrecomputedLandmarks(tmp_path)
    assert source.path_for("main/5535415699068794046/00001.mp4") == path
    assert source.landmarks_for("main/5535415699068794046/00002") is None
    crops = FaceChain(source.for_video("main/5535415699068794046/00001"))(frames[:6])
    assert crops.detected.tolist() == [f is not None for f in stored]
    with pytest.raises(LandmarksFileError, match="no landmarks file"):
        source.for_video("main/5535415699068794046/00002")
    fallback = DlibVideoLandmarker()
    assert source.for_video("main/5535415699068794046/00002", fallback=fallback) is fallback


def test_precomputed_refuses_a_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([np.zeros((68, 2)), _Evil(marker)]))
    with pytest.raises(LandmarksFileError) as caught:
        load_landmarks_file(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "unsafe pickle" in message and "system" in message
    assert not marker.exists()
    path.write_bytes(pickle.dumps(eval))  # a bare builtin is refused too
    with pytest.raises(LandmarksFileError, match="unsafe pickle"):
        load_landmarks_file(path)


def test_our_npy_and_npz_landmark_files(tmp_path, clip):
    _, truth = clip
    stored = [truth[0], None, truth[2]]
    path = save_landmarks(tmp_path / "a" / "clip.npy", stored)
    loaded = load_landmarks_file(path)
    assert loaded[1] is None
    np.testing.assert_allclose(loaded[2], truth[2], atol=1e-3)
    np.savez(tmp_path / "clip.npz", landmarks=np.load(path))
    assert [f is None for f in load_landmarks_file(tmp_path / "clip.npz")] == [False, True, False]
    np.save(tmp_path / "bad.npy", np.zeros((3, 5, 2)))
    with pytest.raises(LandmarksFileError, match="bad.npy: .*68"):
        load_landmarks_file(tmp_path / "bad.npy")
    np.savez(tmp_path / "other.npz", points=np.zeros((3, 68, 2)))
    with pytest.raises(LandmarksFileError, match="no 'landmarks' array"):
        load_landmarks_file(tmp_path / "other.npz")
    with pytest.raises(LandmarksFileError, match="file not found"):
        load_landmarks_file(tmp_path / "missing.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle")
    with pytest.raises(LandmarksFileError, match="cannot read"):
        load_landmarks_file(tmp_path / "garbage.pkl")


class _Reduce:
    """Pickles as ``function(*args)`` (then ``__setstate__(state)``): hand-made hostile pickles."""

    def __init__(self, function, args, state=None) -> None:
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _memory_bombs(tmp_path: Path) -> dict[str, Path]:
    """Small files asking for terabytes: the allocation must be refused before it is tried."""
    import zipfile

    rebuild = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct, as pickles name it
    pickles = {
        "array_shape": _Reduce(rebuild, (np.ndarray, (10**13,), b"b")),
        "object_array": _Reduce(rebuild, (np.ndarray, (0,), b"b"), (1, (10**10,), np.dtype("O"), False, [])),
        "subarray_dtype": _Reduce(rebuild, (np.ndarray, (10**4,), np.dtype(("f8", (2**27,))))),
        "frame_count": [None] * 2_000_000,
    }
    paths = {}
    for name, content in pickles.items():
        paths[name] = tmp_path / f"{name}.pkl"
        paths[name].write_bytes(pickle.dumps(content, protocol=4))
    paths["npy_header"] = tmp_path / "header.npy"
    paths["npy_header"].write_bytes(_npy_header((10**13, 68, 2)) + b"\0" * 64)
    paths["npy_object"] = tmp_path / "object.npy"
    paths["npy_object"].write_bytes(_npy_header((10**9,), "|O") + b"\0" * 64)
    paths["npz_header"] = tmp_path / "header.npz"
    with zipfile.ZipFile(paths["npz_header"], "w") as archive:
        archive.writestr("landmarks.npy", _npy_header((10**13, 68, 2)) + b"\0" * 64)
    return paths


def test_landmark_files_cannot_ask_for_unbounded_memory(tmp_path):
    """A 100-byte pickle (or .npy/.npz header) asking numpy for 10^13 elements is refused in one
    line before anything is allocated, rather than raising MemoryError (which aborts a batch job)."""
    for name, path in _memory_bombs(tmp_path).items():
        with pytest.raises(LandmarksFileError) as caught:
            load_landmarks_file(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (name, message)
        assert "too large" in message or "object" in message, (name, message)
    assert os.path.getsize(tmp_path / "array_shape.pkl") < 120


def test_landmarks_lookup_stays_inside_its_folder(tmp_path, clip):
    _, truth = clip
    root, outside = tmp_path / "marks", tmp_path / "outside"
    (root / "main").mkdir(parents=True)
    outside.mkdir()
    save_landmarks(outside / "evil.npy", [truth[0]])
    (root / "main" / "link.npy").symlink_to(outside / "evil.npy")
    source = PrecomputedLandmarks(root)
    for hostile in ["../outside/evil", "main/../../outside/evil", str(outside / "evil"), "main/link"]:
        with pytest.raises(LandmarksFileError, match="leads outside"):
            source.landmarks_for(hostile)
    assert source.landmarks_for("main/absent") is None


def test_stored_landmarks_may_differ_from_the_video_by_a_few_frames(clip):
    frames, truth = clip
    crops = FaceChain()(frames[:10], list(truth[:8]))
    assert crops.crops.shape[0] == 10 and crops.detected.tolist() == [True] * 8 + [False] * 2
    assert len(FaceChain()(frames[:10], truth[:12])) == 10
    with pytest.raises(ValueError, match="clip.mp4: landmarks for 20 frames, but the video has 10"):
        FaceChain()(frames[:10], truth[:20], source="clip.mp4")


def test_synthetic_corpus_video_end_to_end(lrs2_corpus):
    """A 160x160 clip as avsr-synth writes it, read back with avsr.media: every frame has a face."""
    from avsr.media import read_video

    path = sorted((lrs2_corpus / "main").rglob("*.mp4"))[0]
    frames = read_video(path).frames
    crops = FaceChain(DlibVideoLandmarker())(frames, source=str(path))
    assert crops.crops.shape == (len(frames), 96, 96) and crops.detected.all()


def test_landmarkers_share_one_face_detector_per_thread():
    """Building dlib's detector costs about 0.4 s: every landmarker of a thread reuses one, and
    another thread gets its own (dlib's detector keeps scratch state while it runs)."""
    import threading

    from avsr.face import DlibLandmarker
    from avsr.face.dlib_landmarker import face_detector

    shared = face_detector()
    assert DlibLandmarker(upsample=0)._detector is shared
    assert DlibVideoLandmarker()._detector is shared
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(face_detector()))
    thread.start()
    thread.join()
    assert elsewhere[0] is not shared
