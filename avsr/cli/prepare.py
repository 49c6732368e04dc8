"""avsr-prepare: turn a corpus on disk into mouth crops, 16 kHz audio and manifests; train tokenizers."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from avsr.console import fail, progress_bar
from avsr.face.align import STYLES as MOUTH_CROP_STYLES

PROGRAM = "avsr-prepare"


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
    return index, count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Prepare LRS2, LRS3 or LRW for training (mouth crops, 16 kHz wav, manifests), "
        "or train a tokenizer from manifests.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{lrs2,lrs3,lrw,tokenizer}")
    for corpus in ("lrs2", "lrs3", "lrw"):
        sub = commands.add_parser(corpus, help=f"prepare a {corpus.upper()} corpus")
        sub.add_argument("source", type=Path, help="corpus root as distributed (never written to)")
        sub.add_argument("output", type=Path, help="prepared corpus root (a rerun resumes)")
        sub.add_argument(
            "--crop-size",
            type=int,
            default=96,
            help="mouth crop side in pixels (96 as auto_avsr; 120 as the seed paper)",
        )
        sub.add_argument(
            "--mouth-crop",
            choices=sorted(MOUTH_CROP_STYLES),
            default="auto_avsr",
            help="whose mouth alignment the crops follow: auto_avsr's (default) or avhubert's (to fine-tune "
            "AV-HuBERT models on the crops they were trained on)",
        )
        sub.add_argument(
            "--landmarks",
            type=Path,
            default=None,
            metavar="DIR",
            help="precomputed landmarks (auto_avsr's per-video pickles, or .npy) instead of dlib",
        )
        sub.add_argument(
            "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)"
        )
        sub.add_argument(
            "--shard", type=_shard, default=(0, 1), metavar="I/N", help="prepare only shard I of N (0 <= I < N)"
        )
        sub.add_argument(
            "--max-duration",
            type=float,
            default=24.0,
            metavar="SECONDS",
            help="cut pretrain clips longer than this at word boundaries (default 24)",
        )
        sub.add_argument(
            "--detect-every",
            type=int,
            default=10,
            metavar="N",
            help="dlib: detect the face every N frames and track in between (1: every frame)",
        )
        sub.add_argument("--crf", type=int, default=0, help="x264 quality of the crop videos (0 lossless)")
        sub.add_argument("--retry-skipped", action="store_true", help="retry items an earlier run skipped")
        sub.add_argument(
            "--preview",
            type=int,
            default=0,
            metavar="N",
            help="write preview.png and preview.mp4 of N random prepared items",
        )
        sub.add_argument("--json", action="store_true", help="print the summary as JSON")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    tok = commands.add_parser("tokenizer", help="train a tokenizer from manifests")
    tok.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="MANIFEST... OUT_DIR",
        help="training manifests, then the output directory",
    )
    tok.add_argument("--kind", choices=("char", "unigram", "bpe"), default="unigram")
    tok.add_argument("--vocab-size", type=int, default=None, help="sentencepiece vocabulary size (not for char)")
    tok.add_argument(
        "--case",
        choices=("upper", "lower", "keep"),
        default="upper",
        help="text normalisation: case (default upper, as LRS2/LRS3/LRW)",
    )
    tok.add_argument(
        "--no-apostrophes", action="store_true", help="text normalisation: drop apostrophes (YOU'RE -> YOURE)"
    )
    tok.add_argument(
        "--numbers",
        choices=("keep", "words"),
        default="keep",
        help="text normalisation: keep digits as written, or spell them out",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tokenizer":
        return run_tokenizer(args)
    return run_corpus(args)


def run_corpus(args: argparse.Namespace) -> int:
    from avsr.data.corpora import CorpusError
    from avsr.data.preparation.clip import ClipSettings
    from avsr.data.preparation.runner import PrepareConfig, claim_output, prepare_corpus

    try:
        if not 32 <= args.crop_size <= 512:
            raise ValueError("--crop-size must be between 32 and 512")
        if args.detect_every < 1:
            raise ValueError("--detect-every must be at least 1")
        if args.landmarks is not None and not args.landmarks.is_dir():
            raise ValueError(f"{args.landmarks}: no such landmarks directory")
        clip = ClipSettings(
            crop_size=args.crop_size,
            landmarks_dir=args.landmarks,
            crf=args.crf,
            detect_every=args.detect_every,
            mouth_crop=args.mouth_crop,
        )
        config = PrepareConfig(
            corpus=args.command,
            source=args.source,
            output=args.output,
            clip=clip,
            workers=args.workers,
            shard=args.shard[0],
            shards=args.shard[1],
            max_seconds=args.max_duration,
            retry_skipped=args.retry_skipped,
        )
        from avsr.data.corpora import list_corpus

        total = len(list_corpus(config.corpus, config.source, config.max_seconds))
        claim_output(config)  # a folder holds crops of one kind
    except (ValueError, CorpusError) as error:
        fail(PROGRAM, str(error))
    from avsr.media import MediaError

    try:
        with progress_bar(f"{PROGRAM} {args.command}", -(-total // config.shards), enabled=not args.quiet) as advance:
            summary = prepare_corpus(config, on_outcome=lambda _: advance())
    except (OSError, MediaError) as error:  # an output that cannot be written (disk full) stops the run
        fail(PROGRAM, f"{str(error).splitlines()[0]} (stopped; a rerun resumes)", code=1)
    report = {
        "output": str(args.output),
        "items": summary.items,
        "prepared": summary.prepared,
        "skipped": summary.skipped,
        "already_done": summary.already_done,
        "skip_reasons": dict(summary.skip_reasons),
        "manifests": summary.manifests,
    }
    if args.preview > 0:
        report["preview"] = make_preview(config, args.preview)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
    return 0


def make_preview(config, count: int) -> dict:
    from avsr.data.corpora import list_corpus
    from avsr.data.preparation.clip import ClipPreparer
    from avsr.data.preparation.preview import write_preview
    from avsr.data.preparation.runner import read_outcomes

    done = {key for key, outcome in read_outcomes(config.output).items() if outcome.row is not None}
    items = [item for item in list_corpus(config.corpus, config.source, config.max_seconds) if item.id in done]
    chosen = sorted(random.Random(0).sample(items, min(count, len(items))), key=lambda item: item.id)
    png, mp4 = config.output / "preview.png", config.output / "preview.mp4"
    shown = write_preview(chosen, ClipPreparer(config.clip), png, mp4)
    return {"png": str(png), "mp4": str(mp4), "items": shown}


def format_report(report: dict) -> str:
    lines = [
        f"prepared {report['prepared']} items, skipped {report['skipped']}, "
        f"{report['already_done']} already done (of {report['items']} in this shard) -> {report['output']}"
    ]
    for reason, count in sorted(report["skip_reasons"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  skipped {count}: {reason}")
    if report["skipped"] or report["skip_reasons"]:
        lines.append(f"  every skipped item is listed in {Path(report['output']) / 'report.tsv'}")
    manifests = ", ".join(f"{split}.tsv {rows}" for split, rows in report["manifests"].items())
    lines.append(f"  manifests (rows, all shards): {manifests or 'none'}")
    if "preview" in report:
        lines.append(
            f"  preview: {report['preview']['png']} and {report['preview']['mp4']} ({report['preview']['items']} items)"
        )
    return "\n".join(lines)


def run_tokenizer(args: argparse.Namespace) -> int:
    from avsr.data.manifest import ManifestError
    from avsr.data.text import TextNormalizer
    from avsr.data.tokenizers import train_tokenizer

    if len(args.paths) < 2:
        fail(PROGRAM, "tokenizer needs at least one MANIFEST and an OUT_DIR")
    *manifests, out_dir = args.paths
    try:
        normalizer = TextNormalizer(case=args.case, keep_apostrophes=not args.no_apostrophes, numbers=args.numbers)
        tokenizer = train_tokenizer(
            manifests, out_dir, kind=args.kind, vocab_size=args.vocab_size, normalizer=normalizer
        )
    except (ValueError, ManifestError) as error:
        fail(PROGRAM, str(error).splitlines()[0])
    print(
        f"{args.kind} tokenizer with {tokenizer.vocab_size} ids -> {out_dir} (fingerprint {tokenizer.fingerprint[:12]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
