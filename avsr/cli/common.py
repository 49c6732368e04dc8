"""What every avsr command shares: one-line errors, a progress bar, the decoding flags."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from avsr.decoding.recognizer import DecodeOptions


class ItemsPerSecondColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.2f} items/s")


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """Print ``program: error: message`` on one line to stderr and exit."""
    print(f"{program}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr; yields the function that advances it (by one, or by n)."""
    if not enabled or total == 0:
        yield lambda n=1: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ItemsPerSecondColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding flags avsr-decode and avsr-bench share (read back with :func:`decode_options`)."""
    parser.add_argument("--decoder", choices=("beam", "greedy"), default="beam",
                        help="hybrid CTC/attention beam search (default) or greedy CTC")
    parser.add_argument("--beam", type=int, default=10, help="beam size (default 10)")
    parser.add_argument("--ctc-weight", type=float, default=0.3, help="CTC weight in the beam search (default 0.3)")
    parser.add_argument("--length-bonus", type=float, default=0.0, help="score added per output token (default 0)")
    parser.add_argument("--length-norm", type=float, default=None, metavar="P",
                        help="rank ended hypotheses by score / (tokens + 1) ** P, fairseq's lenpen (default: the "
                        "model's recommendation: 1 for converted AV-HuBERT models, else 0)")
    parser.add_argument("--max-length", type=int, default=None, help="longest output in tokens (default: the encoder frames)")


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """:class:`DecodeOptions` from :func:`add_search_arguments`' flags (RecognizerError if invalid)."""
    from avsr.decoding.recognizer import DecodeOptions

    return DecodeOptions(decoder=args.decoder, beam=args.beam, ctc_weight=args.ctc_weight, length_bonus=args.length_bonus,
                         max_length=args.max_length, length_normalisation=args.length_norm)
