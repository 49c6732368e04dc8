"""avsr-bench: WER and CER of a trained model on a test manifest, per modality, noise and SNR.

    avsr-bench --model runs/synth/model --manifest runs/synth/prepared/test.tsv \
        --modalities a,v,av --noise babble --snr clean,10,5,0,-5

Writes OUT/results.json, OUT/results.md (the table, also printed), OUT/wer_vs_snr.png and
OUT/hyps/<condition>.tsv (id, reference, hypothesis).

    avsr-bench --model M --manifest P/test.tsv --manifest P/test_seen.tsv \
        --video-corruption none,blur,occlusion,frozen,wrong_face

scores each manifest on its own (rows labelled by its stem: speakers never seen in training
against seen ones) and the video-using modalities on clean and deliberately corrupted mouth crops
(seeded); the table then also gives audio-visual minus audio, and condition names (hyps/) are
prefixed by the manifest's label when there are several and suffixed by the corruption.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avsr.cli.common import add_search_arguments, decode_options, load_recognizer
from avsr.console import fail, progress_bar

PROGRAM = "avsr-bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Benchmark a trained model: WER/CER per modality x noise x SNR on a prepared test "
        "manifest, with seeded (repeatable) noise; writes results.json, results.md, wer_vs_snr.png.",
    )
    parser.add_argument("--model", type=Path, required=True, help="model folder (avsr-train's OUTPUT_DIR/model)")
    parser.add_argument(
        "--manifest",
        type=Path,
        action="append",
        required=True,
        help="test manifest (avsr-prepare's test.tsv); give it more than once to score several "
        "(e.g. test.tsv and test_seen.tsv), each labelled by its file's stem",
    )
    parser.add_argument("--modalities", default="a,v,av", help="comma list of a, v, av (default: a,v,av)")
    parser.add_argument("--noise", default="babble", help="comma list of babble, white (default: babble)")
    parser.add_argument("--snr", default="clean,20,10,5,0,-5", help="comma list of dB values and 'clean'")
    parser.add_argument(
        "--video-corruption",
        default="none",
        help="comma list of none, blur, occlusion, frozen, wrong_face, noise: the mouth crops as they "
        "are and/or deliberately corrupted, seeded per utterance (default: none)",
    )
    add_search_arguments(parser)
    parser.add_argument(
        "--babble-manifest",
        type=Path,
        default=None,
        help="utterances to make babble from (default: the test manifest's own)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances (of each manifest)")
    parser.add_argument("--batch-frames", type=int, default=3000, help="padded frames per decoding batch")
    parser.add_argument("--seed", type=int, default=0, help="noise and video-corruption seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: MODEL/../bench/<first manifest's name>)"
    )
    parser.add_argument("--json", action="store_true", help="print results.json instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from avsr.data.tokenizers.base import TokenizerError
    from avsr.decoding.recognizer import RecognizerError
    from avsr.eval.bench import (
        BenchConfig,
        BenchError,
        load_utterances,
        parse_snrs,
        run_bench,
        total_batches,
        write_outputs,
    )
    from avsr.models.weights import WeightsError

    try:
        options = decode_options(args)
    except (RecognizerError, ValueError) as exc:
        fail(PROGRAM, str(exc))
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    noises = [n.strip() for n in args.noise.split(",") if n.strip()]
    corruptions = [c.strip() for c in args.video_corruption.split(",") if c.strip()]
    try:
        config = BenchConfig(
            manifests=args.manifest,
            modalities=modalities,
            noises=noises,
            snrs=parse_snrs(args.snr),
            options=options,
            babble_manifest=args.babble_manifest,
            max_frames_per_batch=args.batch_frames,
            limit=args.limit,
            seed=args.seed,
            video_corruptions=corruptions,
        )
        recognizer = load_recognizer(args.model, args)
        config.options = recognizer.resolve(options)  # the model's recommended search settings where no flag is given
        frames = [[u.row.frames for u in load_utterances(m, args.limit)] for m in config.manifests]
    except (BenchError, RecognizerError, WeightsError, TokenizerError) as exc:
        fail(PROGRAM, str(exc))
    out_dir = args.out or (args.model.parent / "bench" / config.manifest.stem)
    skipped: list[str] = []
    try:
        total = total_batches(config, frames)
        with progress_bar("decoding", total, enabled=not args.quiet) as advance:
            results, transcripts = run_bench(recognizer, config, on_batch=lambda n: advance(), skipped=skipped)
    except (BenchError, RecognizerError) as exc:
        fail(PROGRAM, str(exc))
    for line in skipped:
        print(f"{PROGRAM}: skipped {line}", file=sys.stderr)
    meta = {"model": str(args.model), "model_step": recognizer.model.metadata.get("step"), "skipped": skipped}
    if args.lm is not None:
        meta.update(lm=str(args.lm), lm_weight=options.lm_weight)
    paths = write_outputs(out_dir, results, transcripts, config, meta)
    if args.json:
        sys.stdout.write(paths["json"].read_text(encoding="utf-8"))
    else:
        print(paths["markdown"].read_text(encoding="utf-8"), end="")
        print(f"avsr-bench: written: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
