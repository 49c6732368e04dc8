"""``avsr-decode --live SOURCE``: print each segment of a live source as its pause closes it."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avsr.console import fail

PROGRAM = "avsr-decode"


def clock(seconds: float) -> str:
    """``MM:SS.ss`` (``H:MM:SS.ss`` from an hour on)."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:05.2f}" if hours else f"{minutes:02d}:{rest:05.2f}"


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM end a live run cleanly, as a KeyboardInterrupt, also where the
    parent started this process with SIGINT ignored (a background job of a script does)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_live(
    args: argparse.Namespace, recognizer, options, segmenting, crop_config, face_choice, model_dir: Path
) -> int:
    """Transcribe ``args.live`` as it arrives; 0 when it was read to its end (or Ctrl-C), 1 when
    the source could not be opened or broke off."""
    from avsr.cli.decode import print_timings
    from avsr.decoding.live import LiveTranscriber, transcribe_piece
    from avsr.decoding.reading import face_chain, loaded_from_media
    from avsr.decoding.stages import StageTimes
    from avsr.decoding.subtitles import write_subtitles
    from avsr.decoding.transcribe import FileResult
    from avsr.media import MediaError
    from avsr.media.live import open_live

    try:
        stream = open_live(args.live, realtime=args.realtime)
    except MediaError as exc:
        fail(PROGRAM, str(exc), code=1)
    chain = face_chain(args.detect_every, crop_config)
    labelled = args.speakers == "all"
    times = StageTimes() if args.timings else None

    def load(frames, audio):
        return loaded_from_media(
            args.live,
            args.modality,
            frames,
            audio,
            lambda: chain,
            decodable=tuple(recognizer.modalities),
            face=face_choice,
            label_speakers=labelled,
            times=times,
        )

    def show(segment) -> None:
        result = segment.result
        if args.json:
            line = json.dumps(
                {
                    "start": round(result.start, 3),
                    "end": round(result.end, 3),
                    "text": result.text,
                    "modality": result.modality,
                    **({"speaker": result.speaker, "box": result.box} if result.speaker else {}),
                    "latency": round(segment.latency, 3),
                    "words": [
                        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words
                    ],
                }
            )
        else:
            who = f"[{result.speaker}] " if labelled and result.speaker else ""
            line = f"[{clock(result.start)}-{clock(result.end)}] {who}{result.text}"
        print(line, flush=True)

    transcriber = LiveTranscriber(
        load, transcribe_piece(recognizer, args.modality, options, segmenting, labelled, times), segmenting
    )
    with stop_on_signals():
        report = transcriber.run(stream, show, lambda note: print(f"{PROGRAM}: {args.live}: {note}", file=sys.stderr))
    ended = "stopped (Ctrl-C)" if report.interrupted else "ended"
    print(
        f"{PROGRAM}: live {ended}: {len(report.segments)} segments in {report.media_seconds:.1f} s of media; "
        f"latency from a segment's end to its text: median {report.latency(0.5):.2f} s, "
        f"95th percentile {report.latency(0.95):.2f} s; real-time factor {report.real_time_factor:.2f}",
        file=sys.stderr,
    )
    if times is not None:
        print_timings(times, seconds=report.media_seconds)
    result = FileResult(args.live, args.modality, report.segments, report.notes, labelled=labelled)
    for kind, target in (("srt", args.srt), ("vtt", args.vtt)):
        if target is not None:
            for path in write_subtitles([result], [args.live], target, kind):
                print(f"{PROGRAM}: wrote {path}", file=sys.stderr)
    if report.error is not None:
        print(f"{PROGRAM}: {report.error} (the source broke off)", file=sys.stderr)
    return 1 if report.error is not None else 0
