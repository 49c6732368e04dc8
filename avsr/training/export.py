"""Export a trained model as a folder that loads without any training code.

``OUTPUT_DIR/model/`` holds ``model.safetensors`` + ``model.yaml`` (`avsr.models.io.save_model`,
with the tokenizer fingerprint, the step and the averaged checkpoints in its ``extra``), a copy of
the tokenizer in ``tokenizer/`` and the training configuration in ``train_config.yaml``. Load it
with ``avsr.models.io.load_model(dir)`` and ``avsr.data.tokenizers.load_tokenizer(dir / "tokenizer")``.

Checkpoint averaging (as auto_avsr's ``average_checkpoints.py``): the mean of the floating-point
weights of several checkpoints; integer buffers come from the newest one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from avsr.media.atomic import atomic_path

TOKENIZER_DIR = "tokenizer"
TRAIN_CONFIG_FILE = "train_config.yaml"


class ExportError(RuntimeError):
    """Nothing to export, or a checkpoint that cannot be read; the message is one line."""


def average_state_dicts(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Element-wise mean of floating-point tensors over ``states`` (same keys and shapes); other
    tensors (step counters, int buffers) are taken from the last state."""
    if not states:
        raise ExportError("no checkpoints to average")
    keys = list(states[-1].keys())
    for i, state in enumerate(states[:-1]):
        if set(state.keys()) != set(keys):
            diff = sorted(set(state.keys()) ^ set(keys))[:4]
            raise ExportError(f"checkpoint {i} has different weights than the last one ({', '.join(diff)} ...)")
    averaged: dict[str, Tensor] = {}
    for key in keys:
        last = states[-1][key]
        if torch.is_floating_point(last):
            total = torch.zeros_like(last, dtype=torch.float64)
            for state in states:
                total += state[key].to(torch.float64)
            averaged[key] = (total / len(states)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy a tokenizer folder (tokenizer.json and the files it lists) to ``target``."""
    import json

    meta_path = source / "tokenizer.json"
    try:
        names = list(json.loads(meta_path.read_text(encoding="utf-8")).get("files", {}))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{meta_path}: cannot read the tokenizer to copy ({exc})") from None
    target.mkdir(parents=True, exist_ok=True)
    for name in [*names, "tokenizer.json"]:
        with atomic_path(target / name) as temp:
            shutil.copyfile(source / name, temp)


def write_export(
    out_dir: Path,
    model: Any,
    *,
    tokenizer_dir: Path,
    train_config: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> Path:
    """Write the model folder (see the module docstring); returns ``out_dir``."""
    from avsr.models.io import save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(tokenizer_dir, out_dir / TOKENIZER_DIR)
    if train_config is not None:
        with atomic_path(out_dir / TRAIN_CONFIG_FILE) as temp:
            Path(temp).write_text(yaml.safe_dump(dict(train_config), sort_keys=False), encoding="utf-8")
    save_model(out_dir, model, extra=dict(extra))
    return out_dir


def load_torch_state(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is "cannot read"
        raise ExportError(f"{path}: cannot read checkpoint weights ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExportError(f"{path}: not a state dict of tensors")
    return state
