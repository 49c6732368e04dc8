"""End-to-end speed of avsr-prepare on a synthetic LRS2-layout corpus (decode, landmarks, crop, write).

All runs go over the same corpus in one invocation, so their ratios mean something on a noisy
machine: one worker detecting the face in every frame (tracking's baseline), then one worker
tracking and ``--workers`` workers tracking, alternated ``--rounds`` times (the spread of the
rounds shows the machine's drift). Each run is a new process, as each avsr-prepare is, and reports:

- frames/s over the whole run, and per core;
- the cores it kept busy: CPU time of the process and its workers over the wall time;
- the seconds to its first finished item: worker start-up (spawn, imports, dlib's two models)
  plus one item, paid once per run whatever the corpus size;
- frames/s from the first to the last finished item: the rate a large corpus approaches.

It also writes the prepared crops again at x264's "medium" preset and at write_mp4's lossless
preset (the same pixels, fewer seconds, a few more bytes).

Prints JSON. The landmark/crop stage alone on 640x480 video is measured by
benchmarks/face_crop.py.

    python benchmarks/prepare.py                 # 160 clips, 2 rounds
    python benchmarks/prepare.py --quick         # 8 clips, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avsr.data.manifest import read_manifest
from avsr.data.preparation.clip import ClipSettings
from avsr.data.preparation.runner import ItemOutcome, PrepareConfig, prepare_corpus
from avsr.data.synth.corpus import SynthConfig, generate
from avsr.media import read_video
from avsr.media.writer import x264_preset


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_prepare(source: Path, output: Path, workers: int, detect_every: int) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    config = PrepareConfig("lrs2", source, output, ClipSettings(detect_every=detect_every), workers=workers)
    finished: list[tuple[float, int]] = []  # (seconds since the start, frames of the item)

    def on_outcome(outcome: ItemOutcome) -> None:
        finished.append((time.perf_counter() - start, outcome.row.frames if outcome.row else 0))

    cpu_before, start = cpu_seconds(), time.perf_counter()
    summary = prepare_corpus(config, on_outcome)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
    frames = sum(row.frames for split in summary.manifests for row in read_manifest(output / f"{split}.tsv"))
    first, last = finished[0][0], finished[-1][0]
    later_frames = sum(count for _, count in finished[1:])
    return {
        "workers": workers,
        "detect_every": detect_every,
        "items": summary.prepared,
        "frames": frames,
        "seconds": round(seconds, 2),
        "frames_per_second": round(frames / seconds, 1),
        "frames_per_second_per_core": round(frames / seconds / workers, 1),
        "cores_busy": round(cpu / seconds, 2),
        "seconds_to_first_item": round(first, 2),
        "steady_frames_per_second": round(later_frames / (last - first), 1) if last > first else None,
    }


def fresh_prepare(source: Path, output: Path, workers: int, detect_every: int) -> dict:
    """``timed_prepare`` in a new process, as a new ``avsr-prepare`` runs: dlib's models, kept by
    a process once loaded, are loaded by every run alike."""
    command = [sys.executable, __file__, "--run", str(source), str(output), str(workers), str(detect_every)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def encode_gray(path: Path, crops, preset: str) -> None:
    """Lossless H.264 of (T, S, S) uint8 crops at x264 ``preset``, as write_mp4 encodes them."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = crops.shape[2], crops.shape[1], "yuv420p"
        stream.options = {"crf": "0", "preset": preset}
        for index, crop in enumerate(crops):
            frame = av.VideoFrame.from_ndarray(crop, format="gray").reformat(format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def crop_writing(prepared: Path, scratch: Path, repeats: int = 3) -> dict:
    """The prepared crops written again at x264's "medium" preset (before) and at write_mp4's
    lossless preset (now): seconds (best of ``repeats``), bytes, and whether the pixels match."""
    crops = [read_video(path, with_audio=False).frames[..., 0] for path in sorted((prepared / "video").rglob("*.mp4"))]
    report: dict[str, dict] = {}
    decoded: dict[str, list] = {}
    for name, preset in (("medium", "medium"), ("now", x264_preset(0))):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for index, clip in enumerate(crops):
                encode_gray(scratch / f"{name}-{index}.mp4", clip, preset)
            best = min(best, time.perf_counter() - start)
        files = [scratch / f"{name}-{index}.mp4" for index in range(len(crops))]
        decoded[name] = [read_video(path, with_audio=False).frames for path in files]
        report[name] = {"preset": preset, "seconds": round(best, 3), "bytes": sum(p.stat().st_size for p in files)}
    return {
        "clips": len(crops),
        "frames": sum(len(clip) for clip in crops),
        **report,
        "speedup": round(report["medium"]["seconds"] / report["now"]["seconds"], 2),
        "size_ratio": round(report["now"]["bytes"] / report["medium"]["bytes"], 3),
        "same_pixels": all(np.array_equal(a, b) for a, b in zip(decoded["medium"], decoded["now"])),
    }


def ratios(runs: list[dict], many: list[dict], key: str) -> list[float]:
    return [round(b[key] / a[key], 2) for a, b in zip(runs, many) if a[key] and b[key]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 clips, 1 round")
    parser.add_argument("--clips", type=int, default=None, help="clips in the corpus (default 160)")
    parser.add_argument("--rounds", type=int, default=None, help="1-worker and N-worker runs, alternated (default 2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers of the parallel runs")
    parser.add_argument("--run", nargs=4, help=argparse.SUPPRESS)  # SOURCE OUT WORKERS DETECT_EVERY, in the child
    args = parser.parse_args()
    if args.run:
        source, output, workers, detect_every = args.run
        print(json.dumps(timed_prepare(Path(source), Path(output), int(workers), int(detect_every))))
        return
    clips = args.clips or (8 if args.quick else 160)
    rounds = args.rounds or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory() as scratch:
        source, out = Path(scratch) / "corpus", Path(scratch) / "out"
        generate(
            source,
            SynthConfig(layout="lrs2", utterances=clips, speakers=4, seed=2, pretrain_fraction=0.0),
            workers=args.workers,
        )
        baseline = fresh_prepare(source, out, workers=1, detect_every=1)
        one, many = [], []
        for _ in range(rounds):
            one.append(fresh_prepare(source, out, workers=1, detect_every=10))
            many.append(fresh_prepare(source, out, workers=args.workers, detect_every=10))
        writing = crop_writing(out, Path(scratch))
    speedups = ratios(one, many, "frames_per_second")
    steady = ratios(one, many, "steady_frames_per_second")
    report = {
        "benchmark": "prepare",
        "video": "synthetic LRS2-layout clips, 160x160, 25 fps, H.264 + AAC; 96x96 lossless crops out",
        "cpu_count": os.cpu_count(),
        "detect_every_frame_one_worker": baseline,
        "tracking_one_worker": one,
        "tracking_all_workers": many,
        "speedup_tracking_vs_detecting": round(one[0]["frames_per_second"] / baseline["frames_per_second"], 2),
        "speedup_tracking_vs_detecting_steady": round(
            one[0]["steady_frames_per_second"] / baseline["steady_frames_per_second"], 2
        ),
        "speedup_all_workers_vs_one": speedups,
        "speedup_all_workers_vs_one_median": statistics.median(speedups),
        "speedup_all_workers_vs_one_steady": steady,
        "crop_writing": writing,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
