"""WER of avsr-decode on a long recording against the length of the pieces it is cut into.

A model trained on single sentences fails on pieces that span a sentence boundary. This joins the
held-out clips of a synthetic LRS2-layout corpus (``test.txt``, in order, until ``--seconds``) into
one audio-visual recording, decodes it as ``avsr-decode`` does (face chain, pause-based
segmentation, batched beam search) with pieces of about 12 s and 5 s (``--segment``), and decodes
each clip on its own (one sentence per piece) as the baseline of the same run. Prints JSON: WER
per condition against the joined transcripts, and the number of pieces.

    python benchmarks/segments.py                       # the demo's model and corpus, 60 s
    python benchmarks/segments.py --quick               # 20 s
    python benchmarks/segments.py --model M --corpus C  # another model folder and corpus
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from avsr.data.wer import error_rates
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.decoding.transcribe import face_chain, load_input, segmenting_for, transcribe_files
from avsr.media import read_video
from avsr.media.writer import write_mp4

ROOT = Path(__file__).resolve().parents[1]
SEGMENT_SECONDS = (12.0, 5.0)


def held_out_clips(corpus: Path, seconds: float) -> list[tuple[Path, str]]:
    """(mp4, transcript) of the corpus's held-out clips, in list order, until ``seconds`` of video."""
    listed = [line.strip() for line in (corpus / "test.txt").read_text().splitlines() if line.strip()]
    clips, total = [], 0.0
    for item in listed:
        video = corpus / "main" / f"{item}.mp4"
        text = (corpus / "main" / f"{item}.txt").read_text().splitlines()[0].split(":", 1)[1].strip()
        clips.append((video, text))
        total += read_video(video).duration
        if total >= seconds:
            break
    return clips


def decode(recognizer: Recognizer, paths: list[Path], segment: float | None, beam: int) -> tuple[str, int]:
    """The joined transcript of ``paths`` decoded audio-visually, and the number of pieces."""
    chain = face_chain(crop_config=recognizer.mouth_crop)
    loaded = [load_input(path, "av", lambda: chain, None, decodable=recognizer.modalities) for path in paths]
    results = transcribe_files(
        recognizer, loaded, "av", DecodeOptions(decoder="beam", beam=beam), segmenting_for(recognizer, segment)
    )
    return " ".join(r.text for r in results), sum(len(r.segments) for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/train/model")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs/demo/corpus")
    parser.add_argument(
        "--seconds", type=float, default=None, help="length of the joined recording (default 60, --quick 20)"
    )
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for path, what in ((args.model / "model.yaml", "model"), (args.corpus / "test.txt", "corpus")):
        if not path.is_file():
            print(
                f"segments benchmark: no {what} at {path}: run 'bash scripts/demo.sh' first or pass its path",
                file=sys.stderr,
            )
            return 2
    recognizer = Recognizer.load(args.model)
    clips = held_out_clips(args.corpus, args.seconds or (20.0 if args.quick else 60.0))
    truth = " ".join(text for _, text in clips)
    report = {
        "model": str(args.model),
        "corpus": str(args.corpus),
        "clips": len(clips),
        "words": len(truth.split()),
        "beam": args.beam,
    }
    with tempfile.TemporaryDirectory() as tmp:
        videos = [read_video(path) for path, _ in clips]
        joined = Path(tmp) / "joined.mp4"
        write_mp4(joined, np.concatenate([v.frames for v in videos]), np.concatenate([v.audio for v in videos]))
        report["recording_seconds"] = round(sum(v.duration for v in videos), 1)
        for seconds in SEGMENT_SECONDS:
            text, pieces = decode(recognizer, [joined], seconds, args.beam)
            rates = error_rates([truth], [text], recognizer.tokenizer.normalize)
            report[f"pieces_of_{seconds:g}s"] = {"pieces": pieces, "wer_percent": round(100 * rates.wer, 1)}
    text, pieces = decode(recognizer, [path for path, _ in clips], None, args.beam)
    rates = error_rates([truth], [text], recognizer.tokenizer.normalize)
    report["one_sentence_per_piece"] = {"pieces": pieces, "wer_percent": round(100 * rates.wer, 1)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
