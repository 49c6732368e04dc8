"""The decoding flags and the default model avsr-decode, avsr-bench and avsr-serve share (one-line
errors and the progress bar are `avsr.console`'s)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avsr.decoding.recognizer import DecodeOptions, Recognizer

#: the model ``bash scripts/demo.sh`` trains, the default of the commands that decode
DEFAULT_MODEL = Path("runs/demo/train/model")

#: shallow fusion's language-model weight when --lm is given without --lm-weight (ESPnet's LRS recipes: 0.1-0.3)
DEFAULT_LM_WEIGHT = 0.3


def default_model() -> Path:
    """The demo's model: under ``$AVSR_DEMO_DIR`` when set (where the demo was told to work)."""
    demo = os.environ.get("AVSR_DEMO_DIR")
    return Path(demo) / "train" / "model" if demo else DEFAULT_MODEL


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
    parser.add_argument(
        "--lm",
        type=Path,
        default=None,
        metavar="DIR",
        help="a language model folder (family lm, the model's tokenizer) fused into the beam search",
    )
    parser.add_argument(
        "--lm-weight",
        type=float,
        default=None,
        metavar="W",
        help=f"shallow fusion: W x the language model's log-prob (default with --lm: {DEFAULT_LM_WEIGHT})",
    )


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """:class:`DecodeOptions` from :func:`add_search_arguments`' flags (RecognizerError if invalid)."""
    from avsr.decoding.recognizer import DecodeOptions, RecognizerError

    if args.lm_weight is not None and args.lm is None:
        raise RecognizerError("--lm-weight needs --lm DIR")
    if args.lm is not None and args.decoder == "greedy":
        raise RecognizerError("--lm is fused into the beam search: use --decoder beam")
    return DecodeOptions(
        lm_weight=0.0 if args.lm is None else (DEFAULT_LM_WEIGHT if args.lm_weight is None else args.lm_weight),
        decoder=args.decoder,
        beam=args.beam,
        ctc_weight=args.ctc_weight,
        length_bonus=args.length_bonus,
        max_length=args.max_length,
        length_normalisation=args.length_norm,
        semantics=args.search_semantics,
    )


def load_recognizer(model_dir: Path, args: argparse.Namespace) -> Recognizer:
    """The model folder's recogniser on ``args.device``, with ``args.lm`` attached (one-line errors:
    RecognizerError, WeightsError, TokenizerError)."""
    from avsr.decoding.recognizer import Recognizer

    recognizer = Recognizer.load(model_dir, args.device)
    if args.lm is not None:
        recognizer.attach_lm(args.lm)
    return recognizer
