"""vl-embed: run the frozen encoders of a vl-train config once over its data, into feature caches.

    vl-embed recipes/vl/synth.yaml [KEY=VALUE ...] [--pairs MORE.tsv ...]

Caches go to data.cache_dir, one folder per (encoder, data source); rerunning resumes an
interrupted cache and skips finished ones. vl-train builds missing caches itself; run vl-embed
first for multi-process training, or to prepare caches on another machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avsr.console import fail

PROGRAM = "vl-embed"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Cache the frozen encoders' features of a vl-train config's data (resumable)."
    )
    parser.add_argument("config", type=Path, help="vl-train YAML (its encoders and data sections)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    parser.add_argument(
        "--pairs", type=Path, nargs="*", default=[], help="more image-caption sources to cache with the same encoders"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from vision_language.features import EncodeOptions, pair_features
    from vision_language.training.recipe import encoder_configs
    from vision_language.training.tasks import USER_ERRORS, load_task_config

    if not args.config.is_file():
        fail(PROGRAM, f"{args.config}: config file not found")
    swallowed = [str(p) for p in args.pairs if "=" in p.name and not p.exists()]
    if swallowed:  # --pairs takes every argument after it
        fail(PROGRAM, f"--pairs {swallowed[0]}: no such file; put KEY=VALUE overrides before --pairs")
    try:
        config = load_task_config(args.config, args.overrides)
        image, text = encoder_configs(config.encoders)
        options = EncodeOptions(
            config.data.cache_dir, config.data.embed_batch_size, config.data.shard_size, show_progress=not args.quiet
        )
        sources = [s for s in (config.data.train, config.data.valid) if s is not None] + list(args.pairs)
        if not sources:
            fail(PROGRAM, "nothing to embed: set data.train/data.valid or pass --pairs")
        for source in sources:
            pairs = pair_features(source, image, text, options)
            print(
                f"{source}: {len(pairs)} pairs, {len(pairs.images)} images -> {pairs.images.folder} {list(pairs.images.item_shape)}, "
                f"{pairs.texts.folder} {list(pairs.texts.item_shape)}"
            )
    except USER_ERRORS as exc:
        fail(PROGRAM, str(exc))
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
