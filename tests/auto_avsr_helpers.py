"""Shared by tests/avsr/models/pretrained/test_auto_avsr.py and scripts/reference/make_auto_avsr_parity.py.

The reference outputs in ``auto_avsr_parity.json`` are computed by that script with auto_avsr's
own model code (a checkout of mpc001/auto_avsr, tag v1.0.0 = 30951b5) on the weights
``random_state`` gives for ``AutoAVSRConfig.tiny`` and on the inputs ``parity_inputs`` gives.
The same functions rebuild both here, so the test compares our model with auto_avsr's without
its code. Only torch is imported, so the script can use this module too.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import torch
from torch import Tensor

DATA = Path(__file__).resolve().parent / "data"
REFERENCE_SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "reference"
PARITY_FILE = DATA / "auto_avsr_parity.json"
#: vocabulary columns the parity file keeps of the CTC log-probs and decoder logits
PARITY_COLUMNS = list(range(0, 5049, 97)) + [5048]
PARITY_TOKENS = [5048, 17, 4000, 250, 3]  # <sos>, then four units
PARITY_FRAMES = 12
#: the weights' seed of each model in the parity file
PARITY_SEEDS = {"v": 100, "a": 101, "av": 102}
#: encoder output columns the parity file keeps
PARITY_WIDTH = 16


def micro_auto_avsr(**sizes):
    """An ``AutoAVSRConfig`` with every layer auto_avsr has at width 32, one encoder and one decoder
    layer unless ``sizes`` say otherwise: a model that builds and runs in milliseconds."""
    from avsr.models.pretrained.auto_avsr import AutoAVSRConfig  # here: the reference script needs torch only

    micro = dict(model_dim=32, heads=2, ffn_dim=64, encoder_layers=1, decoder_layers=1, decoder_heads=2)
    return AutoAVSRConfig(**{**micro, "decoder_ffn_dim": 64, "frontend_width": 0.125, **sizes})


def read_key_table(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``key<TAB>shape<TAB>dtype`` lines (shape comma-separated, empty for a scalar)."""
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        table[key] = (tuple(int(s) for s in shape.split(",")) if shape else (), getattr(torch, dtype))
    return table


def module_table(module: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The names, shapes and dtypes of a module's state (the input of ``random_state``)."""
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def scaled_random(name: str, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> Tensor:
    """One random tensor, scaled by what its name says it is so that activations stay of order
    one through a deep random network: norm weights near 1, positive running variances, small
    biases, matrices scaled by 1/sqrt(fan-in); integer buffers are zero."""
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    x = torch.randn(shape, generator=generator)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        x = 0.5 + 0.5 * x.abs()
    elif leaf == "running_mean" or leaf == "bias" or leaf.startswith("pos_bias"):
        x = 0.1 * x
    elif len(shape) == 1:
        x = 1.0 + 0.1 * x
    else:
        x = x / math.sqrt(math.prod(shape[1:]))
    return x.to(dtype)


def random_state(table: dict[str, tuple[tuple[int, ...], torch.dtype]], seed: int) -> dict[str, Tensor]:
    """``scaled_random`` weights with the table's names, shapes and dtypes, drawn in name order
    from one generator. Deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    return {name: scaled_random(name, *table[name], g) for name in sorted(table)}


def parity_inputs(seed: int = 7) -> tuple[Tensor, Tensor]:
    """(video (T, 88, 88) normalised grey frames, audio (T * 640,) raw waveform)."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(PARITY_FRAMES, 88, 88, generator=g)
    audio = 0.1 * torch.randn(PARITY_FRAMES * 640, generator=g) + 0.02
    return video, audio


def import_anchors():
    """scripts/reference/anchors.py (imports an anchor's code from a checkout the user gives)."""
    if str(REFERENCE_SCRIPTS) not in sys.path:
        sys.path.insert(0, str(REFERENCE_SCRIPTS))
    return importlib.import_module("anchors")
