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

Then ``--workers`` independent one-worker preparers run side by side (nothing shared but the
machine: their slowdown against a lone one is contention for the cores' caches, memory and host).
It also writes the prepared crops again at x264's "medium" preset and with write_mp4's lossless
options, and reads both back as training does (the same pixels; seconds and bytes of each).

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

from avsr.data.preparation.clip import ClipSettings
from avsr.data.preparation.runner import ItemOutcome, PrepareConfig, prepare_corpus
from avsr.data.synth.corpus import SynthConfig, generate
from avsr.media import write_mp4
from avsr.media.writer import x264_options
from avsr.training.media import read_mouth_video


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
    frames = sum(count for _, count in finished)  # every item of the corpus: OUT starts empty
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


def crop_writing(prepared: Path, scratch: Path, repeats: int = 3) -> dict:
    """The prepared crops written again with x264's "medium" preset (before) and with write_mp4's
    lossless options (now), then read back by the training reader: seconds of each (best of
    ``repeats``), bytes, and whether the pixels match."""
    crops = [read_mouth_video(path) for path in sorted((prepared / "video").rglob("*.mp4"))]
    frames = sum(len(clip) for clip in crops)
    report: dict[str, dict] = {}
    decoded: dict[str, list] = {}
    for name, options in (("medium", {"preset": "medium"}), ("now", x264_options(0))):
        files = [scratch / f"{name}-{index}.mp4" for index in range(len(crops))]
        write = read = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for path, clip in zip(files, crops):
                write_mp4(path, clip, crf=0, x264=options)
            middle = time.perf_counter()
            decoded[name] = [read_mouth_video(path) for path in files]
            write, read = min(write, middle - start), min(read, time.perf_counter() - middle)
        report[name] = {
            "x264": options,
            "write_frames_per_second": round(frames / write, 1),
            "read_frames_per_second": round(frames / read, 1),
            "bytes_per_frame": round(sum(path.stat().st_size for path in files) / frames, 1),
        }
    before, now = report["medium"], report["now"]
    return {
        "clips": len(crops),
        "frames": frames,
        **report,
        "write_speedup": round(now["write_frames_per_second"] / before["write_frames_per_second"], 2),
        "read_speedup": round(now["read_frames_per_second"] / before["read_frames_per_second"], 2),
        "size_ratio": round(now["bytes_per_frame"] / before["bytes_per_frame"], 3),
        "same_pixels": all(np.array_equal(a, b) for a, b in zip(decoded["medium"], decoded["now"])),
    }


def side_by_side(source: Path, scratch: Path, count: int) -> list[dict]:
    """``count`` independent one-worker preparers of the whole corpus started at once, each in its
    own process and folder: what each core gives when nothing is shared but the machine. Against
    the lone one-worker runs this shows contention for the machine (caches, memory, the host's
    other tenants); against the pool it shows what the pool's own machinery costs."""
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--run", str(source), str(scratch / f"side{index}"), "1", "10"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(count)
    ]
    return [json.loads(child.communicate()[0]) for child in children]


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
        pair = side_by_side(source, Path(scratch), args.workers)
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
        "speedup_all_workers_vs_one_median": round(statistics.median(speedups), 3),
        "speedup_all_workers_vs_one_steady": steady,
        "side_by_side": {
            "what": f"{args.workers} independent one-worker preparers at once, each of the whole corpus",
            "seconds": [run["seconds"] for run in pair],
            "steady_frames_per_second": [run["steady_frames_per_second"] for run in pair],
            "slowdown_vs_lone": round(
                statistics.mean(run["seconds"] for run in pair) / statistics.mean(run["seconds"] for run in one), 3
            ),
            "their_sum_vs_one": round(
                sum(run["steady_frames_per_second"] for run in pair)
                / statistics.mean(run["steady_frames_per_second"] for run in one),
                2,
            ),
        },
        "crop_writing": writing,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
