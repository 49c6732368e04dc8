"""avsr-decode: transcribe video or audio files with a trained model, with word times.

For example:

    avsr-decode talk.mp4                                   # audio-visual, the demo's model
    avsr-decode --model runs/synth2k/train/model --modality v silent.mp4 --srt silent.srt
    avsr-decode --modality a *.wav --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avsr.cli.common import DEFAULT_MODEL, add_search_arguments, decode_options, default_model, load_recognizer
from avsr.console import fail, progress_bar
from avsr.decoding.outputs import OUTPUT_FORMATS
from avsr.decoding.segment import SegmentConfig

PROGRAM = "avsr-decode"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Transcribe video or audio files: face and mouth crops as in avsr-prepare, long inputs "
        "split at pauses, hybrid CTC/attention beam search, word times from a CTC forced alignment.",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="VIDEO_AUDIO_OR_FOLDER",
        help="files, or folders whose media files (by suffix, recursively) are all transcribed",
    )
    parser.add_argument(
        "--list",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a file naming one input per line, relative to its folder (repeatable)",
    )
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
        "--speakers",
        choices=("active", "all"),
        default="active",
        help="several faces in view: each segment reads the lips of the face speaking in it (active, the "
        "default); all: the same, and the transcripts and subtitles say who speaks ([S1], [S2]; faces are "
        "numbered as first seen, left to right), with one transcript per speaker in --json",
    )
    parser.add_argument("--face", type=int, default=None, metavar="N", help="read the lips of face N (S1 = 1) only")
    parser.add_argument(
        "--face-box",
        default=None,
        metavar="X,Y,W,H",
        help="read the lips of the face in this box only (pixels: left, top, width, height)",
    )
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
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        metavar="OUT",
        help="write OUT/<name>.txt, .json, .srt and .vtt per input, mirroring folders; a rerun skips finished inputs",
    )
    parser.add_argument(
        "--formats",
        default=",".join(OUTPUT_FORMATS),
        help=f"what --out-dir writes, comma-separated (default {','.join(OUTPUT_FORMATS)})",
    )
    parser.add_argument("--redo", action="store_true", help="with --out-dir: decode finished inputs again")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes reading files and cropping mouths while the model decodes"
    )
    parser.add_argument(
        "--live",
        default=None,
        metavar="SOURCE",
        help="transcribe as it arrives: a camera (/dev/video0), a stream URL (rtsp://, http://, udp://, ...) or a "
        "file; each segment is printed when the pause after it closes it; Ctrl-C ends it after the last segment",
    )
    parser.add_argument("--realtime", action="store_true", help="with --live FILE: play the file at its own pace")
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
    from avsr.decoding.batch import LoadSettings, transcribe_many
    from avsr.decoding.inputs import collect_inputs
    from avsr.decoding.outputs import decode_document, finished, output_paths, write_outputs
    from avsr.decoding.recognizer import RecognizerError
    from avsr.decoding.stages import StageTimes
    from avsr.decoding.subtitles import write_subtitles
    from avsr.decoding.transcribe import segmenting_for
    from avsr.media.paths import OutsideRootError
    from avsr.models.weights import WeightsError

    formats = check_arguments(args)
    face_choice = face_argument(args)
    if args.live is not None:
        check_live_arguments(args)
    elif not args.inputs and not args.list:
        fail(PROGRAM, "nothing to transcribe: give files, folders or --list FILE")
    model_dir = args.model or default_model()
    if args.model is None and not (model_dir / "model.yaml").is_file():
        fail(
            PROGRAM,
            f"no model at {model_dir}: train one with 'bash scripts/demo.sh' or pass --model DIR (avsr-train's OUTPUT_DIR/model)",
        )
    inputs, problems = collect_inputs(args.inputs, args.list) if args.live is None else ([], [])
    for problem in problems:
        print(f"{PROGRAM}: skipped {problem}", file=sys.stderr)
    if not inputs and args.live is None:
        fail(PROGRAM, "no media files in the folders and lists given", code=1)
    try:
        options = decode_options(args)
        recognizer = load_recognizer(model_dir, args)
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
        if args.srt or args.vtt or args.json or args.out_dir:
            print(
                f"{PROGRAM}: warning: {model_dir} has no CTC head: attention-only beam search (--ctc-weight unused), "
                "no word times (subtitles get one cue per segment)",
                file=sys.stderr,
            )

    if args.live is not None:
        from avsr.cli.live import run_live

        return run_live(args, recognizer, options, segmenting, crop_config, face_choice, model_dir)
    outputs: dict[int, dict[str, Path]] = {}
    todo = list(range(len(inputs)))
    if args.out_dir is not None:
        try:
            outputs = {i: output_paths(args.out_dir, item.name, formats) for i, item in enumerate(inputs)}
        except OutsideRootError as exc:
            fail(PROGRAM, str(exc))
        todo = [i for i in todo if args.redo or not finished(outputs[i])]
        if len(todo) < len(inputs):
            print(
                f"{PROGRAM}: {len(inputs) - len(todo)} of {len(inputs)} inputs already done in {args.out_dir} (--redo decodes them again)",
                file=sys.stderr,
            )
    times = StageTimes() if args.timings else None
    settings = LoadSettings(
        args.modality,
        tuple(recognizer.modalities),
        args.detect_every,
        crop_config,
        times is not None,
        face_choice,
        args.speakers == "all",
    )
    results, skipped, media_seconds = {}, {}, 0.0
    show = not args.quiet and len(todo) > 1
    with progress_bar(PROGRAM, len(todo), enabled=show, unit="files") as advance:
        outcomes = transcribe_many(
            recognizer,
            [inputs[i].path for i in todo],
            settings,
            options,
            segmenting,
            workers=args.workers,
            times=times,
            labelled=args.speakers == "all",
        )
        try:
            for outcome in outcomes:
                index = todo[outcome.index]
                if outcome.skipped is not None:
                    if len(inputs) == 1:
                        fail(PROGRAM, outcome.skipped, code=1)
                    print(f"{PROGRAM}: skipped {outcome.skipped}", file=sys.stderr)
                    skipped[index] = outcome.skipped
                else:
                    results[index] = outcome.result
                    media_seconds += outcome.seconds
                    for note in outcome.result.notes:
                        print(f"{PROGRAM}: {outcome.result.path}: {note}", file=sys.stderr)
                    if index in outputs:
                        write_outputs(outcome.result, outputs[index], str(model_dir))
                advance()
        except RecognizerError as exc:
            fail(PROGRAM, str(exc), code=1)
    if todo and not results and len(todo) == len(inputs):
        fail(PROGRAM, f"none of the {len(todo)} inputs could be decoded", code=1)
    ordered = [results[i] for i in sorted(results)]
    if times is not None:
        print_timings(times, seconds=media_seconds)
    for kind, target in (("srt", args.srt), ("vtt", args.vtt)):
        if target is not None:
            for path in write_subtitles(ordered, [str(i.path) for i in inputs], target, kind):
                print(f"{PROGRAM}: wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(decode_document(str(model_dir), ordered), indent=2))
    elif len(ordered) == 1 and len(inputs) == 1:
        print(ordered[0].text)
    else:
        for r in ordered:
            print(f"{r.path}: {r.text}")
    bad = len(skipped) + len(problems)
    if bad and len(inputs) > 1:
        names = [str(inputs[i].path) for i in sorted(skipped)] + [p.split(": ")[0] for p in problems]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        print(f"{PROGRAM}: {bad} of {len(inputs) + len(problems)} inputs skipped: {shown}", file=sys.stderr)
    return 1 if bad else 0


def check_arguments(args: argparse.Namespace) -> tuple[str, ...]:
    """One-line errors for flags that cannot work together; returns the --out-dir formats."""
    for flag, value in (("--segment", args.segment), ("--max-segment", args.max_segment)):
        if value is not None and not value > 0:
            fail(PROGRAM, f"{flag} must be a positive number of seconds, got {value:g}")
    if args.realtime and args.live is None:
        fail(PROGRAM, "--realtime plays a file at its pace: give it with --live FILE")
    if args.workers < 1:
        fail(PROGRAM, f"--workers must be at least 1, got {args.workers}")
    formats = tuple(dict.fromkeys(f.strip() for f in args.formats.split(",") if f.strip()))
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown or not formats:
        fail(PROGRAM, f"--formats: {', '.join(unknown) or 'nothing'} is not among {', '.join(OUTPUT_FORMATS)}")
    if args.out_dir is not None and (args.srt or args.vtt):
        fail(PROGRAM, "--srt/--vtt name one file or folder; with --out-dir, choose subtitles with --formats")
    return formats


def check_live_arguments(args: argparse.Namespace) -> None:
    """--live reads one source: no files, lists, output folders or workers beside it."""
    from avsr.media.live import source_kind

    clash = [
        flag
        for flag, given in (
            ("files or folders", bool(args.inputs)),
            ("--list", bool(args.list)),
            ("--out-dir", args.out_dir is not None),
            ("--workers", args.workers > 1),
        )
        if given
    ]
    if clash:
        fail(PROGRAM, f"--live reads one source: drop {', '.join(clash)}")
    if args.realtime and source_kind(args.live) != "file":
        fail(PROGRAM, f"--realtime plays a file at its pace; {args.live} is a {source_kind(args.live)}, live already")


def face_argument(args: argparse.Namespace):
    """``--face N`` or ``--face-box X,Y,W,H`` as the reader takes it (None: the speaker per segment)."""
    if args.face is not None and args.face_box is not None:
        fail(PROGRAM, "--face and --face-box both pin a face: give one")
    if (args.face is not None or args.face_box is not None) and args.speakers == "all":
        fail(PROGRAM, "--speakers all labels every speaking face; --face/--face-box read one face only: give one")
    if args.face is not None:
        if args.face < 1:
            fail(PROGRAM, f"--face counts from 1 (S1), got {args.face}")
        return args.face
    if args.face_box is None:
        return None
    try:
        box = tuple(int(v) for v in args.face_box.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0 or min(box[:2]) < 0:
        fail(PROGRAM, f"--face-box wants X,Y,W,H in whole pixels with W and H > 0, got {args.face_box!r}")
    return box


def print_timings(times, seconds: float) -> None:
    """One line per stage on stderr: seconds and real-time factor (stage seconds per media second)."""
    print(f"{PROGRAM}: timings for {seconds:.1f} s of media", file=sys.stderr)
    for name, row in times.report(seconds).items():
        print(f"  {name:<7} {row['seconds']:8.2f} s   RTF {row['rtf']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
