"""avsr-decode: transcribe video or audio files with a trained model, with word times.

For example:

    avsr-decode talk.mp4                                   # audio-visual, the demo's model
    avsr-decode --model runs/synth2k/train/model --modality v silent.mp4 --srt silent.srt
    avsr-decode --modality a *.wav --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from avsr.cli.common import add_search_arguments, decode_options
from avsr.console import fail, progress_bar
from avsr.decoding.segment import SegmentConfig

PROGRAM = "avsr-decode"
#: Where the README's main command (scripts/demo.sh) leaves its model.
DEFAULT_MODEL = Path("runs/demo/train/model")


def default_model() -> Path:
    demo = os.environ.get("AVSR_DEMO_DIR")
    return Path(demo) / "train" / "model" if demo else DEFAULT_MODEL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Transcribe video or audio files: face and mouth crops as in avsr-prepare, long inputs "
        "split at pauses, hybrid CTC/attention beam search, word times from a CTC forced alignment.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="VIDEO_OR_AUDIO")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"model folder (default: {DEFAULT_MODEL}, or $AVSR_DEMO_DIR/train/model: what bash scripts/demo.sh trains)",
    )
    parser.add_argument(
        "--modality",
        choices=("av", "a", "v"),
        default=None,
        help="av: audio and lips (default; or the model's only modality when it has one): a silent "
        "video, an audio file or a video without a face is decoded from what it has, when the model "
        "can, and stderr says so; a: audio only (audio files too); v: lip reading",
    )
    add_search_arguments(parser)
    parser.add_argument(
        "--segment",
        type=float,
        default=None,
        help="long inputs are cut at pauses into pieces of about this many seconds (default: the median "
        f"length of the model's training utterances, or {SegmentConfig.target_seconds:g} when not recorded)",
    )
    parser.add_argument(
        "--max-segment", type=float, default=12.0, help="longest piece decoded at once, seconds (default 12)"
    )
    parser.add_argument("--srt", type=Path, default=None, help="write SubRip subtitles (a folder when several inputs)")
    parser.add_argument("--vtt", type=Path, default=None, help="write WebVTT subtitles (a folder when several inputs)")
    parser.add_argument("--json", action="store_true", help="print segments, words, times and scores as JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--detect-every", type=int, default=10, help="face detector every N frames, tracking between")
    parser.add_argument(
        "--timings",
        action="store_true",
        help="print the seconds and real-time factor of each stage (media, face, crop, model, search, align)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from avsr.data.tokenizers.base import TokenizerError
    from avsr.decoding.recognizer import Recognizer, RecognizerError
    from avsr.decoding.stages import StageTimes
    from avsr.decoding.subtitles import write_subtitles
    from avsr.decoding.transcribe import TranscribeError, face_chain, load_input, segmenting_for, transcribe_files
    from avsr.face import FaceChain
    from avsr.models.weights import WeightsError

    model_dir = args.model or default_model()
    if args.model is None and not (model_dir / "model.yaml").is_file():
        fail(
            PROGRAM,
            f"no model at {model_dir}: train one with 'bash scripts/demo.sh' or pass --model DIR (avsr-train's OUTPUT_DIR/model)",
        )
    for flag, value in (("--segment", args.segment), ("--max-segment", args.max_segment)):
        if value is not None and not value > 0:
            fail(PROGRAM, f"{flag} must be a positive number of seconds, got {value:g}")
    try:
        options = decode_options(args)
        recognizer = Recognizer.load(model_dir, args.device)
        options = recognizer.resolve(options)  # the model's recommended search settings where no flag is given
        segmenting = segmenting_for(recognizer, args.segment, args.max_segment)
        if args.modality is None:  # av, unless the model decodes only one modality (e.g. auto_avsr's VSR)
            args.modality = (
                "av" if "av" in recognizer.modalities or not recognizer.modalities else recognizer.modalities[0]
            )
        recognizer.check_modality(args.modality)
        crop_config = recognizer.mouth_crop  # unusable settings are refused before any input is read
    except (RecognizerError, WeightsError, TokenizerError, ValueError) as exc:
        fail(PROGRAM, str(exc))
    if not recognizer.has_ctc:
        if args.decoder == "greedy":
            fail(
                PROGRAM,
                f"{model_dir}: this model has no CTC head, so there is no greedy CTC decoding: use --decoder beam",
            )
        if args.srt or args.vtt or args.json:
            print(
                f"{PROGRAM}: warning: {model_dir} has no CTC head: attention-only beam search (--ctc-weight unused), "
                "no word times (subtitles get one cue per segment)",
                file=sys.stderr,
            )

    chain: list[FaceChain] = []

    def faces() -> FaceChain:
        if not chain:
            chain.append(face_chain(args.detect_every, crop_config))
        return chain[0]

    times = StageTimes() if args.timings else None
    loaded, failed = [], 0
    with progress_bar("reading", len(args.inputs), enabled=not args.quiet and len(args.inputs) > 1) as advance:
        for path in args.inputs:
            try:
                loaded.append(load_input(path, args.modality, faces, times, decodable=recognizer.modalities))
            except TranscribeError as exc:
                if len(args.inputs) == 1:
                    fail(PROGRAM, str(exc), code=1)
                print(f"{PROGRAM}: skipped {exc}", file=sys.stderr)
                failed += 1
            advance()
    if not loaded:
        fail(PROGRAM, f"none of the {len(args.inputs)} inputs could be decoded", code=1)
    try:
        results = transcribe_files(recognizer, loaded, args.modality, options, segmenting, times=times)
    except RecognizerError as exc:
        fail(PROGRAM, str(exc), code=1)
    for result in results:
        for note in result.notes:
            print(f"{PROGRAM}: {result.path}: {note}", file=sys.stderr)
    if times is not None:
        print_timings(times, seconds=sum(item.frames for item in loaded) / 25)
    for kind, target in (("srt", args.srt), ("vtt", args.vtt)):
        if target is not None:
            for path in write_subtitles(results, [str(p) for p in args.inputs], target, kind):
                print(f"{PROGRAM}: wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": str(model_dir), "files": [r.to_dict() for r in results]}, indent=2))
    elif len(results) == 1 and len(args.inputs) == 1:
        print(results[0].text)
    else:
        for r in results:
            print(f"{r.path}: {r.text}")
    return 1 if failed else 0


def print_timings(times, seconds: float) -> None:
    """One line per stage on stderr: seconds and real-time factor (stage seconds per media second)."""
    print(f"{PROGRAM}: timings for {seconds:.1f} s of media", file=sys.stderr)
    for name, row in times.report(seconds).items():
        print(f"  {name:<7} {row['seconds']:8.2f} s   RTF {row['rtf']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
