"""avsr-synth: make a synthetic audio-visual speech corpus in the LRS2 or LRW layout."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from avsr.console import fail, progress_bar

PROGRAM = "avsr-synth"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Synthesise a talking-face corpus (espeak-ng speech, a real face photograph whose "
        "lips follow the phonemes) in the real LRS2 or LRW layout. Same seed, same corpus.",
    )
    parser.add_argument("out_dir", type=Path, help="corpus root to create (a rerun with the same options resumes)")
    parser.add_argument(
        "--layout",
        choices=("lrs2", "lrw", "scenes"),
        default="lrs2",
        help="lrs2: sentence clips; lrw: word clips; scenes: conversations of --people-per-scene people side "
        "by side taking turns, with the truth of who speaks when (test material for avsr-decode --speakers)",
    )
    parser.add_argument("--utterances", type=int, default=100, help="number of clips (default 100)")
    parser.add_argument("--speakers", type=int, default=8, help="number of speakers, at least 3 (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--vocabulary",
        choices=("grid", "open"),
        default="grid",
        help="lrs2 and scenes text: GRID-like 6-word commands (51 words) or open news vocabulary (480 words)",
    )
    parser.add_argument(
        "--people-per-scene", type=int, default=2, metavar="N", help="scenes: people in one video (2 to 4; default 2)"
    )
    parser.add_argument("--words", type=int, default=10, help="lrw: number of target words (default 10)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="frame side in pixels (default 160 for lrs2, 256 for lrw, as the real corpora)",
    )
    parser.add_argument(
        "--pretrain-fraction",
        type=float,
        default=0.2,
        help="lrs2: share of training speakers' clips put in pretrain/ as longer clips",
    )
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of speakers held out for test")
    parser.add_argument(
        "--identities",
        type=int,
        default=None,
        metavar="N",
        help="distinct people to cast, at least --speakers (default: one per speaker); extra ones are "
        "recorded as spare faces, distinct from every speaker",
    )
    parser.add_argument(
        "--faces",
        type=Path,
        default=None,
        metavar="DIR",
        help="make the speakers from your own face photographs (every file in DIR one photograph) "
        "instead of the built-in public-domain and MIT-licensed ones",
    )
    parser.add_argument(
        "--distinct-from",
        type=Path,
        default=None,
        metavar="CORPUS",
        help="cast people who are not the people of another avsr-synth corpus (by dlib's recogniser): "
        "e.g. a word corpus whose lip reader will be tested on CORPUS's test speakers",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)"
    )
    parser.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="afterwards, measure lip sync on the first N clips with dlib's landmarker, and how "
        "distinct the speakers' faces are by dlib's face recogniser",
    )
    parser.add_argument(
        "--preview", type=Path, default=None, metavar="PNG", help="write a still strip of the first clip's frames"
    )
    parser.add_argument(
        "--people",
        type=Path,
        default=None,
        metavar="PNG",
        help="write one frame of each of the first 8 speakers side by side",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from avsr.data.synth.corpus import SynthConfig, check_output_dir, generate, summarize, total_duration

    try:
        config = SynthConfig(
            layout=args.layout,
            utterances=args.utterances,
            speakers=args.speakers,
            seed=args.seed,
            vocabulary=args.vocabulary,
            words=args.words,
            image_size=args.image_size,
            pretrain_fraction=args.pretrain_fraction,
            test_fraction=args.test_fraction,
            identities=args.identities,
            faces=None if args.faces is None else str(args.faces.resolve()),
            distinct_from=None if args.distinct_from is None else str(args.distinct_from.resolve()),
            people_per_scene=args.people_per_scene,
        )
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        check_output_dir(args.out_dir, config)
        if config.faces is not None:  # a file that is no face photograph: say which, before any work
            from avsr.data.synth.identities.cast import check_sources

            check_sources(config.face_sources())
        if config.distinct_from is not None:  # another corpus that cannot be read: say so before any work
            from avsr.data.synth.corpus import recorded_people

            recorded_people(Path(config.distinct_from), config.face_sources())
    except ValueError as error:
        fail(PROGRAM, str(error))
    from avsr.data.synth.identities.cast import CastingError
    from avsr.media import MediaError

    try:
        with progress_bar(f"{PROGRAM} {args.layout}", args.utterances, enabled=not args.quiet) as advance:
            plan = generate(args.out_dir, config, workers=args.workers, on_item=lambda _: advance())
    except CastingError as error:
        fail(PROGRAM, str(error))
    except (OSError, MediaError) as error:  # an output that cannot be written (disk full) stops the run
        fail(PROGRAM, f"{str(error).splitlines()[0]} (stopped; a rerun resumes)", code=1)
    summary = summarize(args.out_dir, plan)
    summary["hours"] = round(total_duration(args.out_dir, plan) / 3600, 4)
    if args.preview is not None:
        from avsr.data.synth.preview import write_strip

        write_strip(args.out_dir / f"{plan.utterances[0].key}.mp4", args.preview, count=16, columns=8)
        summary["preview"] = str(args.preview)
    if args.people is not None:
        from avsr.data.synth.preview import write_people_strip

        summary["people"] = {"png": str(args.people), "speakers": write_people_strip(args.out_dir, args.people)}
    if args.check > 0:
        from avsr.data.synth.verify import verify_corpus

        summary["lip_sync"] = [  # one face per clip: a scene's several faces are avsr-decode --speakers' test
            {"clip": key, "frames": r.frames, "faces_found": r.faces_found, "correlation": round(r.correlation, 3)}
            for key, r in (verify_corpus(args.out_dir, plan, args.check) if args.layout != "scenes" else [])
        ]
        from avsr.data.synth.identities.cast import descriptor_distances, distinctness_report

        people = [s.identity for s in plan.speakers]
        # The other corpus's people were read once, for casting: their distances are in the cast.
        summary["identities"] = distinctness_report(
            descriptor_distances(people), [s.split for s in plan.speakers], plan.cast.avoided
        )
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    splits = ", ".join(f"{name} {count}" for name, count in summary["per_split"].items())
    speakers = ", ".join(f"{name} {count}" for name, count in summary["speakers"].items())
    lines = [
        f"{summary['layout']} corpus in {summary['root']}: {summary['utterances']} clips "
        f"({summary['hours'] * 60:.1f} min), {summary['frame_width']}x{summary['frame_size']} px at 25 fps, 16 kHz audio\n"
        f"  clips per split: {splits}\n"
        f"  speakers per split (disjoint): {speakers}\n"
        f"  vocabulary: {summary['vocabulary']} words",
    ]
    if "preview" in summary:
        lines.append(f"  preview strip: {summary['preview']}")
    if "people" in summary:
        lines.append(f"  people strip: {summary['people']['png']} ({summary['people']['speakers']} speakers)")
    for check in summary.get("lip_sync", []):
        lines.append(
            f"  lip sync {check['clip']}: face in {check['faces_found']}/{check['frames']} frames, "
            f"r(inner-lip gap, rendered opening) = {check['correlation']:.3f}"
        )
    if "identities" in summary:
        found = summary["identities"]

        def show(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        lines.append(
            f"  faces (dlib's recogniser, same person under {found['threshold']}): {found['identities']} speakers, "
            f"min distance {show(found['min_pair'])}, min test-vs-train {show(found['min_test_vs_train'])}, "
            f"{found['pairs_under_threshold']} of {found['pairs']} pairs under {found['threshold']}"
        )
        if "avoided" in found:
            lines.append(
                f"  against the {found['avoided']} people of --distinct-from: min distance {show(found['min_vs_avoided'])}, "
                f"{found['pairs_under_threshold_vs_avoided']} pairs under {found['threshold']}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
