"""avsr-convert: turn a published model's checkpoint into our model folder.

    avsr-convert auto_avsr vsr_trlrs3_base.pth models/auto_avsr_vsr
    avsr-convert auto_avsr avsr_trlrwlrs2lrs3vox2avsp_base.pth models/auto_avsr_av --modality av
    avsr-convert avhubert large_vox_433h.pt models/avhubert_large --tokenizer DIR

The folder (model.safetensors, model.yaml with the model family and the preprocessing,
tokenizer/) is what ``avsr-train`` exports, so ``avsr-decode --model OUT_DIR`` and ``avsr-bench``
use it as they are. Checkpoints are read with ``torch.load(weights_only=True)`` (no unpickling
of code), every key must be mapped and every shape must fit, or the command exits with status 2
and one line naming the file and the offending keys.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

from avsr.console import fail

PROGRAM = "avsr-convert"
#: model family -> "module:function(checkpoint, out_dir, *, tokenizer[, modality]) -> Path"
CONVERTERS = {
    "auto_avsr": "avsr.models.pretrained.auto_avsr:convert_checkpoint",
    "avhubert": "avsr.models.pretrained.avhubert:convert_checkpoint",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Convert a published checkpoint into an avsr model folder (model.safetensors, model.yaml, "
        "tokenizer/) that avsr-decode and avsr-bench load with --model.",
    )
    parser.add_argument("family", choices=sorted(CONVERTERS), help="whose checkpoint it is")
    parser.add_argument("checkpoint", type=Path, help="the checkpoint file (e.g. auto_avsr's vsr_trlrs3_base.pth)")
    parser.add_argument("out_dir", type=Path, help="model folder to write")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer: a tokenizer folder, or (auto_avsr) a sentencepiece .model with <name>_units.txt "
                        "beside it (default for auto_avsr: its unigram5000, shipped)")
    parser.add_argument("--modality", choices=("v", "a", "av"), default=None,
                        help="auto_avsr: the kind of model the checkpoint must hold (checked; it is read from the keys)")
    return parser


def load_converter(family: str):
    module_name, function = CONVERTERS[family].split(":")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        fail(PROGRAM, f"the {family} converter is not available ({exc})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    convert = load_converter(args.family)
    kwargs = {"tokenizer": args.tokenizer}
    if args.modality is not None:
        if "modality" not in inspect.signature(convert).parameters:
            fail(PROGRAM, f"--modality does not apply to {args.family} checkpoints")
        kwargs["modality"] = args.modality
    if not args.checkpoint.is_file():
        fail(PROGRAM, f"{args.checkpoint}: no such file")
    try:
        out = convert(args.checkpoint, args.out_dir, **kwargs)
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        message = str(exc).strip().splitlines()
        fail(PROGRAM, message[0] if message else f"{args.checkpoint}: {type(exc).__name__}")
    print(f"{PROGRAM}: wrote {out} ({args.family} model from {args.checkpoint}); decode with: avsr-decode --model {out} VIDEO",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
