"""avsr-serve: a local web page to see and hear what the model reads.

For example:

    avsr-serve                                    # the demo's model, http://127.0.0.1:8000
    avsr-serve --model runs/mine/model --port 8080 --decoder greedy

Open a file or record from the camera; the page shows the transcript with each word lit as it is
spoken, the face boxes and mouth crops the model saw, what audio alone, lips alone and both make
of the clip, and how each holds up as noise rises. Scripts use the same JSON API (docs/serve.md).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from avsr.cli.common import add_search_arguments, decode_options, default_model, load_recognizer
from avsr.console import fail

PROGRAM = "avsr-serve"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="A local web page (and JSON API) that transcribes uploaded or recorded clips: words lit "
        "as they are spoken, face boxes and mouth crops, audio vs lips vs both, and a noise slider.",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder (default: the demo's, as avsr-decode's --model)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port, printed)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted (default 200)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for uploads while they are decoded (default: a new temporary folder, removed at exit)",
    )
    add_search_arguments(parser)
    parser.add_argument(
        "--segment", type=float, default=None, help="cut long inputs at pauses into pieces of about this many seconds"
    )
    parser.add_argument("--max-segment", type=float, default=12.0, help="longest piece decoded at once, seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--detect-every", type=int, default=10, help="face detector every N frames, tracking between")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from avsr.data.tokenizers.base import TokenizerError
    from avsr.decoding.recognizer import RecognizerError
    from avsr.decoding.transcribe import segmenting_for
    from avsr.models.weights import WeightsError
    from avsr.serve.analysis import Analyser, AnalysisSettings
    from avsr.serve.app import AvsrServer, ServeState, log

    if not args.max_upload_mb > 0:
        fail(PROGRAM, f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    for flag, value in (("--segment", args.segment), ("--max-segment", args.max_segment)):
        if value is not None and not value > 0:
            fail(PROGRAM, f"{flag} must be a positive number of seconds, got {value:g}")
    if not 0 <= args.port < 65536:
        fail(PROGRAM, f"--port must be 0-65535, got {args.port}")
    model_dir = args.model or default_model()
    if args.model is None and not (model_dir / "model.yaml").is_file():
        fail(PROGRAM, f"no model at {model_dir}: train one with 'bash scripts/demo.sh' or pass --model DIR")
    try:
        recognizer = load_recognizer(model_dir, args)
        options = recognizer.resolve(decode_options(args))
        settings = AnalysisSettings(
            str(model_dir),
            options,
            segmenting_for(recognizer, args.segment, args.max_segment),
            args.detect_every,
            recognizer.mouth_crop,
        )
    except (RecognizerError, WeightsError, TokenizerError, ValueError) as exc:
        fail(PROGRAM, str(exc))
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="avsr-serve-"))
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        state = ServeState(Analyser(recognizer, settings), work_dir, int(args.max_upload_mb * 2**20), args.verbose)
        server = AvsrServer((args.host, args.port), state)
    except OSError as exc:
        fail(PROGRAM, f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})")
    host, port = server.server_address[:2]
    log(f"serving {model_dir} on http://{host}:{port}/ (Ctrl-C stops it)")
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop cleans up as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(state.uploads, ignore_errors=True)
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
