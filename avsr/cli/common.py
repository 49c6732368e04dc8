"""The decoding flags avsr-decode and avsr-bench share (one-line errors and the progress bar are
`avsr.console`'s)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avsr.decoding.recognizer import DecodeOptions


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding flags avsr-decode and avsr-bench share (read back with :func:`decode_options`).
    A search flag left out is what the model recommends (model.yaml ``extra.decoding``), else
    ``SEARCH_DEFAULTS``."""
    from avsr.decoding.beam_search import SEARCH_DEFAULTS, SEMANTICS_NAMES

    def default(name: str) -> str:
        return f"default: the model's recommendation, else {SEARCH_DEFAULTS[name]}"

    parser.add_argument(
        "--decoder",
        choices=("beam", "greedy"),
        default="beam",
        help="hybrid CTC/attention beam search (default) or greedy CTC",
    )
    parser.add_argument(
        "--beam", type=int, default=None, help=f"beam size ({default('beam')}; converted auto_avsr models: 40)"
    )
    parser.add_argument(
        "--ctc-weight",
        type=float,
        default=None,
        help=f"CTC weight in the beam search ({default('ctc_weight')}; converted auto_avsr models: 0.1)",
    )
    parser.add_argument("--length-bonus", type=float, default=0.0, help="score added per output token (default 0)")
    parser.add_argument(
        "--length-norm",
        type=float,
        default=None,
        metavar="P",
        help="rank ended hypotheses by score / (tokens + 1) ** P, fairseq's lenpen "
        f"({default('length_normalisation')}; converted AV-HuBERT models: 1)",
    )
    parser.add_argument(
        "--search-semantics",
        choices=SEMANTICS_NAMES,
        default=None,
        help="the beam search's rules: 'exact' stops only when no live hypothesis can overtake the best "
        "ended one; 'espnet' is auto_avsr's own search (ESPnet's end detection; the same n-best) "
        f"({default('semantics')}; converted auto_avsr models: espnet)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="longest output in tokens (default: the encoder frames; with the espnet "
        "search, a maximum length turns its end detection off, as ESPnet's maxlenratio < 0 does)",
    )


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """:class:`DecodeOptions` from :func:`add_search_arguments`' flags (RecognizerError if invalid)."""
    from avsr.decoding.recognizer import DecodeOptions

    return DecodeOptions(
        decoder=args.decoder,
        beam=args.beam,
        ctc_weight=args.ctc_weight,
        length_bonus=args.length_bonus,
        max_length=args.max_length,
        length_normalisation=args.length_norm,
        semantics=args.search_semantics,
    )
