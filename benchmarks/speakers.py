"""Who is speaking: how often avsr-decode reads the right face's lips in a conversation, and what
reading the wrong face costs.

On synthetic conversations with a known truth (``avsr-synth --layout scenes``: 2 or 3 people side
by side taking turns, listeners still or mouthing other words):

1. ``attribution`` (no model): every face tracked, the speaker of each turn chosen from the
   synchrony of lips and sound (`avsr.decoding.speakers`), against the truth; per turn (the
   truth's turn boundaries) and per segment (the segments avsr-decode plans, pauses and speaker
   changes, each compared with the person whose speech fills most of it). The baseline is what
   avsr-decode did before: the largest face for the whole video.
2. ``wer`` (with ``--model``): WER of the whole conversation decoded as avsr-decode does (the
   active speaker's lips per segment) against the same segments with another face's lips (the
   wrong face) and against the largest face throughout, per modality (v, av).

    python benchmarks/speakers.py                              # makes 20 scenes of 2 and of 3 people
    python benchmarks/speakers.py --model runs/demo/train/model --scenes 20 --out speakers.json
    python benchmarks/speakers.py --corpus CORPUS ...           # scenes made before (avsr-synth --layout scenes)

Prints JSON (also written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from avsr.cli import synth as synth_cli
from avsr.data.wer import error_rates
from avsr.decoding.reading import load_input
from avsr.decoding.segment import SegmentConfig, plan_segments
from avsr.decoding.speakers import active_face
from avsr.face import FaceChain
from avsr.face.tracks import median_box


def make_scenes(root: Path, people: int, scenes: int, seed: int) -> Path:
    """``scenes`` conversations of ``people`` people (8 speakers cast) under ``root``, made once."""
    corpus = root / f"scenes_{people}"
    args = [str(corpus), "--layout", "scenes", "--utterances", str(scenes), "--speakers", "8"]
    args += ["--people-per-scene", str(people), "--seed", str(seed), "--quiet"]
    if synth_cli.main(args) != 0:
        raise SystemExit(f"avsr-synth failed for {corpus}")
    return corpus


def scene_files(corpus: Path) -> list[tuple[Path, dict]]:
    videos = sorted((corpus / "scenes").glob("*.mp4"))
    return [(v, json.loads(v.with_suffix(".json").read_text(encoding="utf-8"))) for v in videos]


def truth_per_frame(truth: dict, frames: int) -> np.ndarray:
    """(frames,) the person speaking in each frame (-1: nobody)."""
    who = np.full(frames, -1)
    for turn in truth["turns"]:
        who[int(round(turn["start"] * 25)) : int(round(turn["end"] * 25))] = turn["person"]
    return who


def position_of(face, width: int) -> int:
    """The panel (person) a face sits in, from its median box centre."""
    x, _, w, _ = median_box(face.boxes)
    return int((x + w / 2) // width)


def largest(faces) -> int:
    """The face with the largest median box: the one avsr-decode read before it chose speakers."""
    return int(np.argmax([median_box(f.boxes)[2] * median_box(f.boxes)[3] for f in faces]))


def attribution(corpora: list[Path], segmenting: SegmentConfig) -> dict:
    chain = FaceChain.dlib()
    rows: dict[str, dict] = {}
    started = time.perf_counter()
    for corpus in corpora:
        for video, truth in scene_files(corpus):
            loaded = load_input(video, "av", lambda: chain)
            size = truth["people"][0]["panel"][2]
            person = [position_of(face, size) for face in loaded.faces]
            openings = [face.opening for face in loaded.faces]
            key = f"{len(truth['people'])} people, listeners {truth['listeners']}"
            row = rows.setdefault(key, {"scenes": 0, "turns": 0, "turns_right": 0, "segments": 0})
            row.setdefault("segments_right", 0)
            row.setdefault("largest_face_turns_right", 0)
            row["scenes"] += 1
            row["faces_found"] = row.get("faces_found", 0) + len(loaded.faces)
            big = person[largest(loaded.faces)]
            for turn in truth["turns"]:
                start, end = int(round(turn["start"] * 25)), int(round(turn["end"] * 25))
                row["turns"] += 1
                row["turns_right"] += int(person[active_face(openings, loaded.sound, start, end)] == turn["person"])
                row["largest_face_turns_right"] += int(big == turn["person"])
            who = truth_per_frame(truth, loaded.frames)

            def speaker_of(start: int, end: int) -> int:
                return active_face(openings, loaded.sound, start, end)

            for segment in plan_segments(loaded.frames, loaded.audio, segmenting, speaker_of):
                spoken = who[segment.start : segment.end]
                spoken = spoken[spoken >= 0]
                if not len(spoken):
                    continue
                row["segments"] += 1
                row["segments_right"] += int(
                    person[speaker_of(segment.start, segment.end)] == np.bincount(spoken).argmax()
                )
    for row in rows.values():
        row["turn_accuracy"] = round(row["turns_right"] / row["turns"], 4)
        row["segment_accuracy"] = round(row["segments_right"] / max(row["segments"], 1), 4)
        row["largest_face_turn_accuracy"] = round(row["largest_face_turns_right"] / row["turns"], 4)
    return {"seconds": round(time.perf_counter() - started, 1), "rows": rows}


def wrong_faces(loaded):
    """The same input with each face's crops swapped for the next face's: every segment reads
    lips that are not the speaker's."""
    faces = loaded.faces
    swapped = [replace(face, crops=faces[(i + 1) % len(faces)].crops) for i, face in enumerate(faces)]
    return replace(loaded, faces=swapped)


def largest_only(loaded):
    """The input as avsr-decode read it before: the largest face's lips throughout."""
    return replace(loaded, faces=[loaded.faces[largest(loaded.faces)]], sound=None)


def wer(corpora: list[Path], model: Path, modalities: list[str], beam: int) -> dict:
    from avsr.decoding.recognizer import DecodeOptions, Recognizer
    from avsr.decoding.transcribe import face_chain, segmenting_for, transcribe_files

    recognizer = Recognizer.load(model)
    options = recognizer.resolve(DecodeOptions(beam=beam))
    segmenting = segmenting_for(recognizer)
    chain = face_chain(crop_config=recognizer.mouth_crop)
    out: dict[str, dict] = {}
    for modality in modalities:
        for corpus in corpora:
            files = scene_files(corpus)
            loaded = [load_input(v, modality, lambda: chain, decodable=recognizer.modalities) for v, _ in files]
            references = [" ".join(t["text"] for t in truth["turns"]) for _, truth in files]
            key = f"{modality}, {len(files[0][1]['people'])} people"
            out[key] = {}
            for name, variant in (
                ("active speaker", None),
                ("wrong face", wrong_faces),
                ("largest face", largest_only),
            ):
                inputs = loaded if variant is None else [variant(x) for x in loaded]
                results = transcribe_files(recognizer, inputs, modality, options, segmenting)
                rates = error_rates(references, [r.text for r in results], recognizer.tokenizer.normalize)
                out[key][name] = {"wer": round(100 * rates.wer, 1), "cer": round(100 * rates.cer, 1)}
    return {"model": str(model), "beam": beam, "rows": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, action="append", default=[], help="scenes made by avsr-synth")
    parser.add_argument("--scenes", type=int, default=20, help="scenes to make per people count (default 20)")
    parser.add_argument("--people", default="2,3", help="people per scene of the scenes made (default 2,3)")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where scenes are made (default: a temporary folder)"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", type=Path, default=None, help="a model folder: also measure the WER")
    parser.add_argument("--modalities", default="v,av")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--segment", type=float, default=4.0, help="segment target seconds for the attribution")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        corpora = list(args.corpus)
        if not corpora:
            work = args.work_dir or Path(temp)
            corpora = [make_scenes(work, int(p), args.scenes, args.seed) for p in args.people.split(",")]
        report = {
            "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
            "corpora": [str(c) for c in corpora],
            "attribution": attribution(corpora, SegmentConfig(target_seconds=args.segment)),
        }
        if args.model is not None:
            report["wer"] = wer(corpora, args.model, args.modalities.split(","), args.beam)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
