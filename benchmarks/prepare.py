"""End-to-end speed of avsr-prepare on a synthetic LRS2-layout corpus (decode, landmarks, crop, write).

Three runs over the same corpus, measured in one invocation so their ratios mean something on a
noisy machine: one worker detecting the face in every frame (the baseline), one worker tracking
(detection every 10 frames), and every core tracking. Prints JSON. The landmark/crop stage alone
on 640x480 video is measured by benchmarks/face_crop.py.

    python benchmarks/prepare.py            # 24 clips
    python benchmarks/prepare.py --quick    # 8 clips
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from avsr.data.manifest import read_manifest
from avsr.data.preparation.clip import ClipSettings
from avsr.data.preparation.runner import PrepareConfig, prepare_corpus
from avsr.data.synth.corpus import SynthConfig, generate


def timed_prepare(source: Path, output: Path, workers: int, detect_every: int) -> dict:
    config = PrepareConfig("lrs2", source, output, ClipSettings(detect_every=detect_every), workers=workers)
    start = time.perf_counter()
    summary = prepare_corpus(config)
    seconds = time.perf_counter() - start
    frames = sum(row.frames for split in summary.manifests for row in read_manifest(output / f"{split}.tsv"))
    return {
        "workers": workers,
        "detect_every": detect_every,
        "items": summary.prepared,
        "frames": frames,
        "seconds": round(seconds, 2),
        "items_per_second": round(summary.prepared / seconds, 3),
        "frames_per_second": round(frames / seconds, 1),
        "frames_per_second_per_core": round(frames / seconds / workers, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    clips = args.clips or (8 if args.quick else 24)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "corpus"
        generate(
            source,
            SynthConfig(layout="lrs2", utterances=clips, speakers=4, seed=2, pretrain_fraction=0.0),
            workers=args.workers,
        )
        baseline = timed_prepare(source, Path(scratch) / "every", workers=1, detect_every=1)
        tracking = timed_prepare(source, Path(scratch) / "track", workers=1, detect_every=10)
        parallel = timed_prepare(source, Path(scratch) / "all", workers=args.workers, detect_every=10)
    report = {
        "benchmark": "prepare",
        "video": "synthetic LRS2-layout clips, 160x160, 25 fps, H.264 + AAC; 96x96 lossless crops out",
        "detect_every_frame_one_worker": baseline,
        "tracking_one_worker": tracking,
        "tracking_all_workers": parallel,
        "speedup_tracking_vs_detecting": round(tracking["frames_per_second"] / baseline["frames_per_second"], 2),
        "speedup_all_workers_vs_one": round(parallel["frames_per_second"] / tracking["frames_per_second"], 2),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
