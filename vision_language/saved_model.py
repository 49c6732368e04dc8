"""A trained aligner on disk: ``model.safetensors`` (projectors, managers, loss parameters) and
``model.yaml`` (the aligner config and both encoder configs), as vl-train exports it. Reading it
needs neither fairseq2 nor pickles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from avsr.media.atomic import atomic_path
from vision_language.encoders import ImageEncoderConfig, TextEncoderConfig
from vision_language.model import Aligner, AlignerConfig
from vision_language.model_paths import with_resolved_path

MODEL_FILE = "model.safetensors"
MODEL_YAML = "model.yaml"
MODEL_FORMAT = "vl-aligner/1"


class ModelError(ValueError):
    """A model folder that cannot be read (missing files, another format, weights that do not fit)."""


@dataclass
class SavedAligner:
    aligner: Aligner
    image_encoder: ImageEncoderConfig
    text_encoder: TextEncoderConfig
    meta: dict[str, Any]


def write_model(out: Path, model: Aligner, encoders: dict[str, Any], extra: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / MODEL_FILE) as temp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, temp)
    meta = {"format": MODEL_FORMAT, "config": model.config.to_dict(), "encoders": encoders, **extra}
    with atomic_path(out / MODEL_YAML) as temp:
        Path(temp).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return out


def load_model(folder: str | os.PathLike[str], *, untrained: bool = False, seed: int = 0) -> SavedAligner:
    """The aligner of a vl-train ``model/`` folder (``untrained``: the same architecture at its
    initialisation, the unaligned baseline), with its encoder configs."""
    folder = Path(folder)
    try:
        meta = yaml.safe_load((folder / MODEL_YAML).read_text(encoding="utf-8"))
    except OSError:
        raise ModelError(f"{folder}: no {MODEL_YAML} (is it a vl-train OUTPUT_DIR/model folder?)") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{folder / MODEL_YAML}: not a vl-train model")
    try:
        config = AlignerConfig.from_dict(meta["config"])
        encoders = meta["encoders"]
        image = ImageEncoderConfig(**with_resolved_path(encoders["image"]))
        text = TextEncoderConfig(**with_resolved_path(encoders["text"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{folder / MODEL_YAML}: bad model config ({exc})") from None
    torch.manual_seed(seed)
    aligner = Aligner(config)
    if not untrained:
        try:
            aligner.load_state_dict(load_file(folder / MODEL_FILE), strict=True)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"{folder / MODEL_FILE}: {str(exc).splitlines()[0]}") from None
    return SavedAligner(aligner.eval(), image, text, meta)


__all__ = ["ModelError", "SavedAligner", "load_model", "write_model"]
