"""Synthetic-corpus speed: utterances per second with one worker and with every core.

The one-worker run is the baseline measured in the same invocation, so the speed-up ratio is
meaningful on a noisy shared machine. Prints JSON.

    python benchmarks/synth.py            # 40 lrs2 utterances per run
    python benchmarks/synth.py --quick    # 8 per run
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from avsr.data.synth.corpus import SynthConfig, generate, total_duration


def timed_run(root: Path, config: SynthConfig, workers: int) -> dict:
    start = time.perf_counter()
    plan = generate(root, config, workers=workers)
    seconds = time.perf_counter() - start
    audio_seconds = total_duration(root, plan)
    return {
        "workers": workers,
        "utterances": config.utterances,
        "seconds": round(seconds, 2),
        "utterances_per_second": round(config.utterances / seconds, 3),
        "utterances_per_second_per_core": round(config.utterances / seconds / workers, 3),
        "media_seconds_per_wall_second": round(audio_seconds / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--utterances", type=int, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    count = args.utterances or (8 if args.quick else 40)
    config = SynthConfig(layout="lrs2", utterances=count, speakers=6, seed=1)
    with tempfile.TemporaryDirectory() as scratch:
        baseline = timed_run(Path(scratch) / "one", config, workers=1)
        parallel = timed_run(Path(scratch) / "all", config, workers=args.workers)
    per_second = parallel["utterances_per_second"]
    report = {
        "benchmark": "synth",
        "baseline": baseline,
        "parallel": parallel,
        "speedup_vs_one_worker": round(per_second / baseline["utterances_per_second"], 2),
        "projected_minutes_for_1000_utterances": round(1000 / per_second / 60, 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
