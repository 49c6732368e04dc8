"""Synthetic-corpus speed: the talking-face renderer and the whole corpus, current code against the
renderer before issue 16 (one fixed palette, no head turns, light, blur or compression levels).

Two measurements, both in one invocation so the ratios mean something on a shared machine:

1. ``renderer``: clips per second of the face renderer alone and with H.264 encoding, one core
   (``OMP_NUM_THREADS=1``, ``cv2.setNumThreads(1)``), on the same mouth tracks (espeak-ng speech of
   GRID sentences, made once here) and the same frame size, for
   * ``previous``: the code of ``--previous`` (default 12f70bf, the commit before the richer
     renderer), unpacked with ``git archive`` into a temporary folder and imported from there in
     a child process;
   * ``current``: the working tree, speakers drawn by ``Appearance.sample`` (head turns, light,
     blur and crf as sampled);
   * ``current_plain``: the working tree with those features switched off (still, frontal, even
     light, crf 18): what the new mouth and the pose machinery cost by themselves.
   Each child renders every clip twice: ``first`` (warp maps solved as poses are first met, as a
   fresh corpus worker does) and ``warm``.
2. ``corpus``: an lrs2 corpus with ``--workers`` processes, previous code and current code (each
   in a child process): planning (casting the people with dlib, measured cold: per speaker, not
   per clip) and then ``generate()`` (rendering, the plan's measurements read back from the
   cache), and the projected minutes for 1,000 clips (planning plus 1,000 clips at that rate).

Prints JSON.

    python benchmarks/synth.py            # 24 renderer clips, 40-clip corpora
    python benchmarks/synth.py --quick    # 8 clips, 12-clip corpora
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "12f70bf"  # synth: split face.py into rig.py, mouth.py and face.py (before issue 16)
BASELINE = "a0a41f4"  # main before issue 20's faster synthesis: the demo section's baseline

# Runs inside a child process whose PYTHONPATH puts one version of avsr first. Argument: a JSON
# job. Uses only what both versions have (TalkingFace(size), Appearance.sample, write_mp4).
RENDER_CHILD = r"""
import dataclasses, inspect, json, os, sys, tempfile, time
import cv2, numpy as np
cv2.setNumThreads(1)
job = json.loads(sys.argv[1])
import avsr
from avsr.data.synth.face import Appearance, TalkingFace
from avsr.media import write_mp4
tracks = list(np.load(job["tracks"]).values())
rng = np.random.default_rng(job["seed"])
speakers = [Appearance.sample(rng) for _ in range(job["speakers"])]
if job["plain"]:
    off = dict(yaw=0.0, pitch=0.0, pose_centre=(0.0, 0.0), light=0.0, light_drift=0.0, blur=0.0, crf=18)
    speakers = [dataclasses.replace(a, **off) for a in speakers]
face = TalkingFace(job["size"])
takes_seed = "seed" in inspect.signature(face.render).parameters
result = {"avsr": os.path.dirname(avsr.__file__), "clips": len(tracks), "frames": int(sum(len(t) for t in tracks))}
with tempfile.TemporaryDirectory() as scratch:
    for name in ("first", "warm"):
        render = encode = 0.0
        for index, track in enumerate(tracks):
            appearance = speakers[index % len(speakers)]
            start = time.perf_counter()
            extra = {"seed": index} if takes_seed else {}
            frames = face.render(track, appearance, 25.0, **extra)
            middle = time.perf_counter()
            write_mp4(os.path.join(scratch, f"{index}.mp4"), frames, fps=25, crf=getattr(appearance, "crf", 18))
            render += middle - start
            encode += time.perf_counter() - middle
        result[name] = {
            "render_seconds": round(render, 3),
            "render_clips_per_second": round(len(tracks) / render, 2),
            "render_ms_per_frame": round(1000 * render / result["frames"], 2),
            "with_encoding_clips_per_second": round(len(tracks) / (render + encode), 2),
        }
print(json.dumps(result))
"""

CORPUS_CHILD = r"""
import inspect, json, os, sys, tempfile, time
job = json.loads(sys.argv[1])
os.environ["AVSR_CACHE_DIR"] = tempfile.mkdtemp()  # casting measured cold, then read back by generate()
import avsr
from avsr.data.synth.corpus import SynthConfig, generate, plan_corpus
config = SynthConfig(layout="lrs2", utterances=job["utterances"], speakers=job["speakers"], seed=1)
start = time.perf_counter()
plan_corpus(config, **({"workers": job["workers"]} if "workers" in inspect.signature(plan_corpus).parameters else {}))
planning = time.perf_counter() - start
start = time.perf_counter()
generate(job["root"], config, workers=job["workers"])
rendering = time.perf_counter() - start
rate = job["utterances"] / rendering
print(json.dumps({"workers": job["workers"], "utterances": job["utterances"], "speakers": job["speakers"],
                  "planning_seconds": round(planning, 2), "planning_seconds_per_speaker": round(planning / job["speakers"], 2),
                  "rendering_seconds": round(rendering, 2), "utterances_per_second": round(rate, 3),
                  "projected_minutes_for_1000_utterances": round((planning + 1000 / rate) / 60, 1)}))
"""


# The demo corpus's casting (scripts/demo.sh: lrs2, 20 speakers, seed 0), its first ``people`` in
# casting order, cold: the same decisions the demo takes for them (a person depends only on those
# cast before). Uses only what both versions have (cast_identities; its measurer where it has one).
DEMO_CAST_CHILD = r"""
import hashlib, inspect, json, os, sys, tempfile, time
job = json.loads(sys.argv[1])
os.environ["AVSR_CACHE_DIR"] = tempfile.mkdtemp()
import numpy as np
from avsr.data.synth.corpus import SynthConfig, _assign_splits
from avsr.data.synth.identities.cast import cast_identities

if __name__ == "__main__":
    config = SynthConfig(layout="lrs2", utterances=2000, speakers=20, seed=0)
    rng = np.random.default_rng(config.seed)  # drawn as plan_speakers draws them
    splits = _assign_splits(config.speakers, config.test_fraction, rng)
    seeds = [int(seed) for seed in rng.integers(2**31, size=config.identity_count)]
    order = sorted(range(len(splits)), key=lambda i: (("train", "val", "test", "spare").index(splits[i]), i))
    first = sorted(order[: job["people"]])
    start = time.perf_counter()
    if "measurer" in inspect.signature(cast_identities).parameters:
        from avsr.data.synth.identities.ahead import Measurer
        with Measurer(job["workers"]) as measurer:
            cast = cast_identities([splits[i] for i in first], [seeds[i] for i in first], config.face_sources(), measurer=measurer)
        workers = job["workers"]
    else:
        cast = cast_identities([splits[i] for i in first], [seeds[i] for i in first], config.face_sources())
        workers = 1
    seconds = time.perf_counter() - start
    recipes = json.dumps([identity.recipe() for identity in cast.identities], sort_keys=True)
    print(json.dumps({"people": len(first), "workers": workers, "casting_seconds": round(seconds, 1),
                      "casting_seconds_per_person": round(seconds / len(first), 1),
                      "distinctness": cast.report(), "lip_sync_screens": list(cast.lip_sync),
                      "cast_digest": hashlib.sha256(recipes.encode()).hexdigest()[:16]}))
"""


def demo_section(baseline: Path | str, people: int, utterances: int, workers: int, scratch: Path) -> dict:
    """The demo corpus (2,000 clips, 20 people): casting per person and rendering per clip, the
    baseline's code against the current code, and the synthesis minutes they project."""
    section: dict = {"people_cast": people, "workers": workers}
    for name, package in (("baseline", baseline), ("current", ROOT)):
        if not isinstance(package, Path):
            section[name] = package
            continue
        casting = run_child(DEMO_CAST_CHILD, {"people": people, "workers": workers}, package)
        job = {"root": str(scratch / f"demo_{name}"), "utterances": utterances, "speakers": 3, "workers": workers}
        rendering = run_child(CORPUS_CHILD, job, package)
        result = {"casting": casting, "rendering": rendering}
        try:
            minutes = (20 * casting["casting_seconds_per_person"] + 2000 / rendering["utterances_per_second"]) / 60
            result["projected_demo_synthesis_minutes"] = round(minutes, 1)
            result["rendering_seconds_per_clip"] = round(1 / rendering["utterances_per_second"], 3)
        except (KeyError, TypeError, ZeroDivisionError):
            pass
        section[name] = result
    try:
        current, old = section["current"], section["baseline"]
        section["same_cast"] = current["casting"]["cast_digest"] == old["casting"]["cast_digest"]
        section["casting_speedup"] = round(old["casting"]["casting_seconds"] / current["casting"]["casting_seconds"], 2)
        section["rendering_speedup"] = round(
            current["rendering"]["utterances_per_second"] / old["rendering"]["utterances_per_second"], 2
        )
    except (KeyError, TypeError, ZeroDivisionError):
        pass
    return section


def unpack_revision(revision: str, folder: Path) -> Path | str:
    """The ``avsr`` package of ``revision`` under ``folder`` (a path), or why not (a string)."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "avsr"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return f"not measured: cannot unpack {revision} ({detail.decode(errors='replace').strip() or error})"
    return folder


def run_child(code: str, job: dict, package_root: Path) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(package_root))
    command = [sys.executable, "-c", code, json.dumps(job)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=str(package_root))
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_tracks(count: int, path: Path) -> None:
    """Mouth tracks (T, 3) of ``count`` GRID sentences spoken by espeak-ng, saved as .npz."""
    from avsr.data.synth.text import SentenceSampler
    from avsr.data.synth.tts import SPEAKER_VOICES, Synthesizer
    from avsr.data.synth.visemes import mouth_track

    synthesizer, sampler, rng = Synthesizer(), SentenceSampler("grid"), np.random.default_rng(0)
    tracks = {}
    for index in range(count):
        speech = synthesizer.speak(" ".join(sampler.sentence(rng)), SPEAKER_VOICES[index % len(SPEAKER_VOICES)])
        tracks[f"t{index:03d}"] = mouth_track(speech.phonemes, int(np.ceil((speech.duration + 0.5) * 25)), 25)
    np.savez(path, **tracks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clips", type=int, default=None, help="renderer clips (default 24, --quick 8)")
    parser.add_argument("--utterances", type=int, default=None, help="corpus clips (default 40, --quick 12)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=160, help="frame side in pixels")
    parser.add_argument("--previous", default=PREVIOUS, help="git revision of the renderer to compare with")
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument(
        "--demo", action="store_true", help="the demo corpus's casting and rendering against --baseline"
    )
    parser.add_argument("--baseline", default=BASELINE, help="git revision the demo section compares with")
    parser.add_argument("--people", type=int, default=None, help="demo: people cast (default 4, --quick 2)")
    args = parser.parse_args()
    clips = args.clips or (8 if args.quick else 24)
    utterances = args.utterances or (12 if args.quick else 40)
    report: dict = {"benchmark": "synth", "host": platform.node(), "previous_revision": args.previous}
    if args.demo:
        with tempfile.TemporaryDirectory() as scratch_name:
            scratch = Path(scratch_name)
            (scratch / "baseline").mkdir()
            baseline = unpack_revision(args.baseline, scratch / "baseline")
            people = args.people or (2 if args.quick else 4)
            report = {"benchmark": "synth", "host": platform.node(), "baseline_revision": args.baseline}
            report["demo"] = demo_section(baseline, people, utterances, args.workers, scratch)
        print(json.dumps(report, indent=1))
        return
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "previous").mkdir()
        previous = unpack_revision(args.previous, scratch / "previous")
        tracks = scratch / "tracks.npz"
        make_tracks(clips, tracks)
        job = {"tracks": str(tracks), "seed": 1, "speakers": 6, "size": args.size, "plain": False}
        renderer: dict = {"clips": clips, "frame_size": args.size, "threads": 1}
        renderer["previous"] = run_child(RENDER_CHILD, job, previous) if isinstance(previous, Path) else previous
        renderer["current"] = run_child(RENDER_CHILD, job, ROOT)
        renderer["current_plain"] = run_child(RENDER_CHILD, {**job, "plain": True}, ROOT)
        for pass_name in ("first", "warm"):
            try:
                current = renderer["current"][pass_name]["render_clips_per_second"]
                ratio = current / renderer["previous"][pass_name]["render_clips_per_second"]
                renderer[f"current_vs_previous_render_speed_{pass_name}"] = round(ratio, 2)
            except (KeyError, TypeError):
                pass
        report["renderer"] = renderer
        if not args.skip_corpus:
            corpus: dict = {}
            for name, package in (("previous", previous), ("current", ROOT)):
                if not isinstance(package, Path):
                    corpus[name] = package
                    continue
                corpus_job = {"root": str(scratch / f"corpus_{name}"), "utterances": utterances, "speakers": 6}
                corpus_job["workers"] = args.workers
                corpus[name] = run_child(CORPUS_CHILD, corpus_job, package)
            report["corpus"] = corpus
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
