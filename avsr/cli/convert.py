"""avsr-convert: turn a published model's checkpoint into our model folder.

    avsr-convert auto_avsr vsr_trlrs3_base.pth models/auto_avsr_vsr
    avsr-convert auto_avsr avsr_trlrwlrs2lrs3vox2avsp_base.pth models/auto_avsr_av --modality av
    avsr-convert avhubert large_vox_433h.pt models/avhubert_large --tokenizer DIR
    avsr-convert --to auto_avsr models/my_finetuned_vsr vsr_finetuned.pth   # and back

The folder (model.safetensors, model.yaml with the model family and the preprocessing,
tokenizer/) is what ``avsr-train`` exports, so ``avsr-decode --model OUT_DIR`` and ``avsr-bench``
use it as they are. Checkpoints are read with ``torch.load(weights_only=True)`` (no unpickling
of code), every key must be mapped and every shape must fit, or the command exits with status 2
and one line naming the file and the offending keys. ``--to auto_avsr`` writes a model folder of
auto_avsr's architecture (converted, or fine-tuned from one) back as auto_avsr's own checkpoint.
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
#: target format -> "module:function(model_dir, out, *, layout) -> Path"
EXPORTERS = {"auto_avsr": "avsr.models.pretrained.auto_avsr_checkpoint:export_checkpoint"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Convert a published checkpoint into an avsr model folder (model.safetensors, model.yaml, "
        "tokenizer/) that avsr-decode and avsr-bench load with --model.",
        epilog="The other way: avsr-convert --to auto_avsr MODEL_DIR OUT.pth writes a model folder of auto_avsr's "
        "architecture (converted, or fine-tuned from one) as auto_avsr's own checkpoint (see avsr-convert --to auto_avsr -h).",
    )
    parser.add_argument("family", choices=sorted(CONVERTERS), help="whose checkpoint it is")
    parser.add_argument("checkpoint", type=Path, help="the checkpoint file (e.g. auto_avsr's vsr_trlrs3_base.pth)")
    parser.add_argument("out_dir", type=Path, help="model folder to write")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="tokenizer: a tokenizer folder, or (auto_avsr) a sentencepiece .model with <name>_units.txt "
        "beside it (default for auto_avsr: its unigram5000, shipped)",
    )
    parser.add_argument(
        "--modality",
        choices=("v", "a", "av"),
        default=None,
        help="auto_avsr: the kind of model the checkpoint must hold (checked; it is read from the keys)",
    )
    return parser


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROGRAM} --to", description="Write an avsr model folder as a published toolkit's own checkpoint."
    )
    parser.add_argument("--to", choices=sorted(EXPORTERS), required=True, help="whose checkpoint layout to write")
    parser.add_argument(
        "model", type=Path, help="the model folder (converted from, or fine-tuned from, that toolkit's model)"
    )
    parser.add_argument("out", type=Path, help="checkpoint file to write (e.g. model.pth)")
    parser.add_argument(
        "--layout",
        choices=("v1.0.0", "head"),
        default=None,
        help="auto_avsr key layout (default: the one the model was converted from, else v1.0.0)",
    )
    return parser


def export(argv: list[str]) -> int:
    args = build_export_parser().parse_args(argv)
    if not args.model.is_dir():
        fail(PROGRAM, f"{args.model}: no such model folder")
    write = load_converter(args.to, EXPORTERS)
    try:
        out = write(args.model, args.out, layout=args.layout)
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        message = str(exc).strip().splitlines()
        fail(PROGRAM, message[0] if message else f"{args.model}: {type(exc).__name__}")
    print(f"{PROGRAM}: wrote {out} ({args.to} checkpoint of {args.model})", file=sys.stderr)
    return 0


def load_converter(family: str, table: dict[str, str] = CONVERTERS):
    module_name, function = table[family].split(":")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        fail(PROGRAM, f"the {family} converter is not available ({exc})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--to" or a.startswith("--to=") for a in argv):
        return export(argv)
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
    print(
        f"{PROGRAM}: wrote {out} ({args.family} model from {args.checkpoint}); decode with: avsr-decode --model {out} VIDEO",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
