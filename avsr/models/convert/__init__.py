"""Checkpoint converters into fairseq2 0.8.1's ``Wav2Vec2Model`` naming (fairseq2 converts neither
fairseq1 pretraining checkpoints nor Hugging Face ones).

``convert_checkpoint(path)`` recognises:

- our converted safetensors (``save_converted``; the architecture is in the file's metadata),
- a Hugging Face wav2vec 2.0 model directory (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``), or that directory's ``config.json``/weights file,
- a fairseq1 checkpoint ``.pt`` (pretraining, or the encoder of a fine-tuned CTC model),
- a fairseq2-format ``.pt`` (``{"model": state_dict}`` with fairseq2 names; no architecture).

Every result has the same key names (``encoder_frontend.*``, ``encoder.*``,
``masker.temporal_mask_embed``); pretraining-only heads are dropped and listed in ``dropped_keys``.
Pickles are only ever read with ``torch.load(weights_only=True)`` (``safe_torch_load``).

Command line: ``python -m avsr.models.convert SRC DST.safetensors`` converts once, so that later
runs load a plain safetensors file.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from avsr.models.convert.common import (
    AVSR_WAV2VEC2_FORMAT,
    CheckpointError,
    ConvertedWav2Vec2,
    encoder_config_from_dict,
    encoder_config_to_dict,
    load_converted,
    read_safetensors_metadata,
    safe_torch_load,
    save_converted,
    structural_differences,
)
from avsr.models.convert.wav2vec2_fairseq1 import convert_fairseq1_checkpoint, is_fairseq1_state_dict
from avsr.models.convert.wav2vec2_hf import convert_hf_checkpoint

_FS2_DROP = re.compile(r"^(quantizer\.|final_proj\.|final_target_proj\.)")


def detect_format(path: str | Path) -> str:
    """ "avsr", "huggingface" or "torch" (a pickle: fairseq1 or fairseq2, told apart after loading)."""
    path = Path(path)
    if path.is_dir():
        return "huggingface"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.name == "config.json":
        return "huggingface"
    if path.suffix == ".safetensors":
        if read_safetensors_metadata(path).get("format") == AVSR_WAV2VEC2_FORMAT:
            return "avsr"
        if (path.parent / "config.json").is_file():
            return "huggingface"
        raise CheckpointError(f"{path}: safetensors file without avsr metadata and no config.json beside it")
    if path.name in ("pytorch_model.bin", "model.safetensors.index.json") and (path.parent / "config.json").is_file():
        return "huggingface"
    return "torch"


def _convert_fairseq2(path: Path, obj: Mapping) -> ConvertedWav2Vec2:
    sd = obj["model"] if isinstance(obj.get("model"), Mapping) else obj
    state, dropped = {}, []
    for key, value in sd.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if _FS2_DROP.match(key):
            dropped.append(key)
        else:
            state[key] = value
    return ConvertedWav2Vec2(
        state_dict=state, encoder_config=None, source_format="fairseq2", dropped_keys=sorted(dropped)
    )


def convert_checkpoint(path: str | Path) -> ConvertedWav2Vec2:
    """Read any supported wav2vec 2.0 checkpoint into fairseq2 naming (see the module docstring)."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "avsr":
        return load_converted(path)
    if kind == "huggingface":
        return convert_hf_checkpoint(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a checkpoint dictionary")
    model = obj.get("model")
    if isinstance(model, Mapping) and is_fairseq1_state_dict(model):
        return convert_fairseq1_checkpoint(path, obj)
    sd = model if isinstance(model, Mapping) else obj
    if any(isinstance(k, str) and k.removeprefix("module.").startswith("encoder_frontend.") for k in sd):
        return _convert_fairseq2(path, obj)
    raise CheckpointError(f"{path}: not a wav2vec 2.0 checkpoint this toolkit knows (fairseq1, fairseq2, HF, avsr)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avsr.models.convert",
        description="Convert a wav2vec 2.0 checkpoint (fairseq1 .pt, Hugging Face directory, fairseq2 .pt) "
        "into avsr's safetensors (fairseq2 key names + architecture metadata).",
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path, help="output .safetensors")
    args = parser.parse_args(argv)
    try:
        converted = convert_checkpoint(args.source)
        save_converted(converted, args.output)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cfg = converted.encoder_config
    arch = (
        f"{cfg.num_encoder_layers} layers, dim {cfg.model_dim}, {cfg.num_encoder_attn_heads} heads, "
        f"norm {cfg.norm_order.name.lower()}"
        if cfg is not None
        else "architecture unknown"
    )
    print(
        f"{args.output}: {len(converted.state_dict)} tensors from {converted.source_format} ({arch}); "
        f"dropped {len(converted.dropped_keys)} pretraining-only tensors"
    )
    return 0


__all__ = [
    "CheckpointError",
    "ConvertedWav2Vec2",
    "convert_checkpoint",
    "convert_fairseq1_checkpoint",
    "convert_hf_checkpoint",
    "detect_format",
    "encoder_config_from_dict",
    "encoder_config_to_dict",
    "load_converted",
    "main",
    "safe_torch_load",
    "save_converted",
    "structural_differences",
]
