"""Export a trained model as a folder that loads without any training code.

``OUTPUT_DIR/model/`` is a model folder (`avsr.models.folder`): ``model.safetensors`` +
``model.yaml`` (with the tokenizer fingerprint, the step and the averaged checkpoints in its
``extra``), a copy of the tokenizer in ``tokenizer/`` and the training configuration in
``train_config.yaml``. Load it with ``avsr.models.folder.load_model_folder(dir)``.

Checkpoint averaging (as auto_avsr's ``average_checkpoints.py``): the mean of the floating-point
weights of several checkpoints; integer buffers come from the newest one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from avsr.media.atomic import atomic_path
from avsr.models.folder import TOKENIZER_DIR, TRAIN_CONFIG_FILE  # noqa: F401 (TOKENIZER_DIR: imported from here too)


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


def write_export(
    out_dir: Path,
    model: Any,
    *,
    tokenizer_dir: Path,
    train_config: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> Path:
    """Write the model folder (see the module docstring); returns ``out_dir``. model.yaml records
    the fingerprint of the tokenizer copied (`avsr.models.folder.save_model_folder`)."""
    from avsr.data.tokenizers import TokenizerError, load_tokenizer
    from avsr.models.folder import save_model_folder
    from avsr.models.weights import WeightsError

    try:
        tokenizer = load_tokenizer(tokenizer_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if train_config is not None:
            with atomic_path(out_dir / TRAIN_CONFIG_FILE) as temp:
                Path(temp).write_text(yaml.safe_dump(dict(train_config), sort_keys=False), encoding="utf-8")
        return save_model_folder(out_dir, model, tokenizer, extra)
    except (TokenizerError, WeightsError) as exc:
        raise ExportError(str(exc)) from None


def load_torch_state(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is "cannot read"
        raise ExportError(
            f"{path}: cannot read checkpoint weights ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExportError(f"{path}: not a state dict of tensors")
    return state
