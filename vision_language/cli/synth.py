"""vl-synth: write the synthetic shapes world (image-caption pairs with held-out combinations).

Layout under OUT: ``images/{train,val,test}/<id>.png``; ``{train,val,test}.tsv`` (``image``,
``caption``, paths relative to OUT); ``zero_shot/<colour>_<shape>/`` with the test images by
class and ``zero_shot/classes.txt`` listing all colour-shape classes; ``karpathy.json`` (5
captions per test image, image paths relative to OUT); ``world.json`` (seed, attributes,
held-out pairs, counts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROGRAM = "vl-synth"


class _ArgumentError(Exception):
    """Raised instead of argparse's usage dump, so bad arguments give one line and exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROGRAM,
        description="Render coloured shapes with paraphrased captions; some (colour, shape) pairs appear "
        "only in the test split, for compositional zero-shot checks. Same seed, same world.",
    )
    parser.add_argument("out", type=Path, help="output folder (created; an earlier vl-synth world there is replaced)")
    parser.add_argument("--images", type=int, default=3000, help="total images, about 80/10/10 (default 3000)")
    parser.add_argument("--size", type=int, default=64, metavar="PX", help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--held-out", type=int, default=4, metavar="K", help="(colour, shape) pairs kept out of training (default 4)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from vision_language.data.synthetic_world import WorldConfig, make_world

    try:
        args = build_parser().parse_args(argv)
        config = WorldConfig(images=args.images, size=args.size, seed=args.seed, held_out=args.held_out)
    except (_ArgumentError, ValueError) as error:
        return _fail(str(error), 2)
    try:
        summary = make_world(
            args.out, images=config.images, size=config.size, seed=config.seed, held_out=config.held_out
        )
    except ValueError as error:
        return _fail(str(error), 2)
    except OSError as error:
        return _fail(str(error).splitlines()[0], 1)
    print(summary.line())
    return 0


def _fail(message: str, code: int) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
