"""Mouth-crop speed on 640x480 video, one core: dlib tracking vs dlib detection on every frame,
and auto_avsr's own MediaPipe path on the same frames when a checkout is given.

Both runs do the whole job on decoded frames: landmarks (``DlibVideoLandmarker`` with
``track=True`` or ``track=False``), gap filling, smoothing, alignment and the 96x96 grayscale crop.
Video decoding is not included. The process is pinned to one CPU and OpenCV to one thread
(``cv2.setNumThreads(1)``; dlib's detector and predictor are single-threaded), so the numbers are
frames per second per core. The video is the synthetic talking face rendered at 480x480 and
padded to 640x480; the true landmarks it was rendered with give each run's error. Prints JSON.

auto_avsr's path (``--auto-avsr-src``, a checkout of mpc001/auto_avsr): its own
``preparation/detectors/mediapipe`` code, MediaPipe face detection (full range) on every frame, then
its ``VideoProcess`` (interpolation, smoothing, alignment, 96x96 grey crop), timed in a child
process on the same frames and pinned to the same core. It needs the legacy ``mediapipe.solutions``
API (mediapipe 0.10.21, which needs numpy < 2): install it beside our environment, not into it,
and name the folder with ``--mediapipe-path`` (put first on the child's ``PYTHONPATH``)::

    pip install --target /tmp/mp --no-deps mediapipe==0.10.21 "numpy<2" "protobuf>=4.25.3,<5" flatbuffers
    python benchmarks/face_crop.py --auto-avsr-src /path/to/auto_avsr --mediapipe-path /tmp/mp

Without them the report says "not measured" and why.

    python benchmarks/face_crop.py            # 2 clips of 100 frames
    python benchmarks/face_crop.py --quick    # 1 clip of 50 frames
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:  # imported in main(), not here: the child process imports no avsr
    from avsr.data.synth.face import TalkingFace
    from avsr.face import FaceChain

WIDTH, HEIGHT = 640, 480
ANCHORS = Path(__file__).resolve().parents[1] / "scripts" / "reference"


def make_clip(face: TalkingFace, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 480, 640, 3) RGB frames and (T, 68, 2) true landmarks of one synthetic speaker."""
    from avsr.data.synth.face import Appearance

    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 25.0
    track = np.stack(
        [
            np.clip(0.45 + 0.45 * np.sin(2 * np.pi * 1.7 * t + rng.uniform(0, 6)), 0, 1),  # syllable-rate opening
            0.6 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6)),
            np.zeros(frames),
        ],
        axis=1,
    )
    appearance = Appearance(
        face_width=float(rng.uniform(0.38, 0.48)),
        background=("coffee", "rocket", "gradient")[seed % 3],
        background_seed=seed,
        motion=1.0,
        motion_seed=seed,
        mirror=False,  # a mirrored face would swap the left and right landmark numbers of the truth
    )
    square = face.render(track, appearance)
    pad = (WIDTH - face.size) // 2
    clip = np.stack(
        [
            cv2.copyMakeBorder(f, 0, HEIGHT - face.size, pad, WIDTH - face.size - pad, cv2.BORDER_REFLECT_101)
            for f in square
        ]
    )
    truth = face.posed_landmarks(track, appearance) + (pad, 0)
    return clip, truth


def run(clips: list[np.ndarray], chain: FaceChain, repeats: int) -> dict:
    """Best of ``repeats`` timings over all clips, with the landmarks of the last repeat."""
    best_total, best_landmarks = float("inf"), float("inf")
    for _ in range(repeats):
        found, stats = [], []
        landmark_seconds = total_seconds = 0.0
        for clip in clips:
            start = time.perf_counter()
            landmarks = chain.landmarks(clip)
            middle = time.perf_counter()
            chain.crop(clip, landmarks)
            end = time.perf_counter()
            landmark_seconds += middle - start
            total_seconds += end - start
            found.append(landmarks)
            stats.append(chain.landmarker.last_stats.as_dict())
        best_total = min(best_total, total_seconds)
        best_landmarks = min(best_landmarks, landmark_seconds)
    frames = sum(len(c) for c in clips)
    summed = {key: sum(s[key] for s in stats) for key in stats[0]}
    return {
        "frames": frames,
        "seconds": round(best_total, 3),
        "frames_per_second": round(frames / best_total, 1),
        "landmark_frames_per_second": round(frames / best_landmarks, 1),
        "crop_ms_per_frame": round(1000 * (best_total - best_landmarks) / frames, 3),
        "stats": summed,
        "_landmarks": found,
    }


def mean_error(found: list[list], truth: list[np.ndarray], points: slice = slice(None)) -> float | None:
    errors = [
        float(np.linalg.norm(f[points] - t[points], axis=1).mean())
        for clip_found, clip_truth in zip(found, truth)
        for f, t in zip(clip_found, clip_truth)
        if f is not None
    ]
    return round(float(np.mean(errors)), 3) if errors else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pin_one_cpu() -> None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus:
        os.sched_setaffinity(0, {cpus[0]})
    cv2.setNumThreads(1)


def mediapipe_child(clips_file: Path, auto_avsr_src: Path, repeats: int) -> None:
    """In the child process: time auto_avsr's MediaPipe detection + VideoProcess on the clips
    (``clips_file``: (N, T, H, W, 3) RGB) and print JSON."""
    pin_one_cpu()
    sys.path.insert(0, str(ANCHORS))
    import anchors

    prep = Path(auto_avsr_src) / "preparation"
    detector = anchors.import_from_checkout(prep, "detectors.mediapipe.detector", "detectors/mediapipe/detector.py")
    process = anchors.import_from_checkout(
        prep, "detectors.mediapipe.video_process", "detectors/mediapipe/video_process.py"
    )
    landmarker, cropper = detector.LandmarksDetector(), process.VideoProcess(convert_gray=True)
    clips = np.load(clips_file)
    best_total = best_landmarks = float("inf")
    for _ in range(repeats):
        landmark_seconds = total_seconds = 0.0
        found = 0
        for clip in clips:
            start = time.perf_counter()
            landmarks = landmarker(clip)
            middle = time.perf_counter()
            crops = cropper(clip, landmarks)
            end = time.perf_counter()
            landmark_seconds, total_seconds = landmark_seconds + middle - start, total_seconds + end - start
            found += sum(lm is not None for lm in landmarks)
            assert crops is not None and crops.shape[1:] == (96, 96)
        best_total, best_landmarks = min(best_total, total_seconds), min(best_landmarks, landmark_seconds)
    frames = int(clips.shape[0] * clips.shape[1])
    print(
        json.dumps(
            {
                "source": f"mpc001/auto_avsr {anchors.checkout_commit(Path(auto_avsr_src))}, preparation/detectors/mediapipe",
                "frames": frames,
                "faces_found": found,
                "seconds": round(best_total, 3),
                "frames_per_second": round(frames / best_total, 1),
                "landmark_frames_per_second": round(frames / best_landmarks, 1),
                "crop_ms_per_frame": round(1000 * (best_total - best_landmarks) / frames, 3),
            }
        )
    )


def measure_auto_avsr(
    clips: list[np.ndarray], auto_avsr_src: Path | None, mediapipe_path: Path | None, repeats: int
) -> dict:
    """auto_avsr's MediaPipe path on ``clips``, measured in a child process, or why not."""
    if auto_avsr_src is None:
        return {"not measured": "no --auto-avsr-src (a checkout of mpc001/auto_avsr) given"}
    env = dict(os.environ)
    if mediapipe_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(mediapipe_path), *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "clips.npy", np.stack(clips))
        command = [
            sys.executable,
            __file__,
            "--mediapipe-child",
            str(Path(tmp) / "clips.npy"),
            "--auto-avsr-src",
            str(auto_avsr_src),
            "--repeats",
            str(repeats),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"not measured": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument(
        "--auto-avsr-src",
        type=Path,
        default=os.environ.get("AVSR_AUTO_AVSR_SRC") or None,
        help="a checkout of mpc001/auto_avsr: also time its MediaPipe path (default: $AVSR_AUTO_AVSR_SRC)",
    )
    parser.add_argument(
        "--mediapipe-path",
        type=Path,
        default=None,
        help="a folder with mediapipe 0.10.21 and numpy < 2 (pip install --target), for auto_avsr's path only",
    )
    parser.add_argument("--mediapipe-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mediapipe_child is not None:
        return mediapipe_child(args.mediapipe_child, args.auto_avsr_src, args.repeats or 1)
    from avsr.data.synth.face import TalkingFace  # here, not at the top: the child process imports no avsr
    from avsr.face import DlibVideoLandmarker, FaceChain, MouthCropConfig

    clips_count = args.clips or (1 if args.quick else 2)
    frames = args.frames or (50 if args.quick else 100)
    repeats = args.repeats or (2 if args.quick else 3)

    pin_one_cpu()
    face = TalkingFace(size=HEIGHT)
    made = [make_clip(face, frames, seed) for seed in range(clips_count)]
    clips, truth = [c for c, _ in made], [t for _, t in made]
    crop = MouthCropConfig(crop_size=args.crop_size)
    tracking = run(clips, FaceChain(DlibVideoLandmarker(track=True), crop), repeats)
    every_frame = run(clips, FaceChain(DlibVideoLandmarker(track=False), crop), repeats)

    tracked, detected = tracking.pop("_landmarks"), every_frame.pop("_landmarks")
    differences = [
        float(np.linalg.norm(a - b, axis=1).mean())
        for clip_a, clip_b in zip(tracked, detected)
        for a, b in zip(clip_a, clip_b)
        if a is not None and b is not None
    ]
    report = {
        "benchmark": "face_crop",
        "video": f"{clips_count} synthetic clip(s) x {frames} frames, {WIDTH}x{HEIGHT} RGB, decoded in memory",
        "crop": f"{args.crop_size}x{args.crop_size} grayscale, auto_avsr alignment, 12-frame smoothing",
        "threads": "one CPU (sched_setaffinity), cv2.setNumThreads(1)",
        "cpu": _cpu_name(),
        "tracking": tracking,
        "detect_every_frame": every_frame,
        "speedup_tracking_vs_every_frame": round(tracking["frames_per_second"] / every_frame["frames_per_second"], 2),
        "landmark_difference_px": {
            "mean": round(float(np.mean(differences)), 3) if differences else None,
            "max": round(float(np.max(differences)), 3) if differences else None,
        },
        "error_vs_truth_px": {
            "tracking_all": mean_error(tracked, truth),
            "every_frame_all": mean_error(detected, truth),
            "tracking_mouth": mean_error(tracked, truth, slice(48, 68)),
            "every_frame_mouth": mean_error(detected, truth, slice(48, 68)),
        },
        "target_frames_per_second_per_core": 256,
    }
    report["auto_avsr_mediapipe"] = measure_auto_avsr(clips, args.auto_avsr_src, args.mediapipe_path, repeats)
    if "frames_per_second" in report["auto_avsr_mediapipe"]:
        report["speedup_tracking_vs_auto_avsr_mediapipe"] = round(
            tracking["frames_per_second"] / report["auto_avsr_mediapipe"]["frames_per_second"], 2
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
