"""Shared by tests/test_auto_avsr.py and the script that made tests/data/auto_avsr_parity.json.

The reference outputs in ``auto_avsr_parity.json`` were computed with auto_avsr's own model code
(mpc001/auto_avsr at tag v1.0.0, run outside this repository) on the weights ``random_state``
gives for ``AutoAVSRConfig.tiny`` and on the inputs ``parity_inputs`` gives. The same functions
rebuild both here, so the test compares our model with auto_avsr's without its code.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

DATA = Path(__file__).resolve().parent / "data"
PARITY_FILE = DATA / "auto_avsr_parity.json"
#: vocabulary columns the parity file keeps of the CTC log-probs and decoder logits
PARITY_COLUMNS = list(range(0, 5049, 97)) + [5048]
PARITY_TOKENS = [5048, 17, 4000, 250, 3]  # <sos>, then four units
PARITY_FRAMES = 12


def read_key_table(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``key<TAB>shape<TAB>dtype`` lines (shape comma-separated, empty for a scalar)."""
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        table[key] = (tuple(int(s) for s in shape.split(",")) if shape else (), getattr(torch, dtype))
    return table


def random_state(table: dict[str, tuple[tuple[int, ...], torch.dtype]], seed: int) -> dict[str, Tensor]:
    """Random weights with the table's names, shapes and dtypes; scaled so that activations stay
    of order one through a deep random network (norm weights near 1, positive running variances,
    matrices scaled by 1/sqrt(fan-in)). Deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name in sorted(table):
        shape, dtype = table[name]
        if not dtype.is_floating_point:
            state[name] = torch.zeros(shape, dtype=dtype)
            continue
        x = torch.randn(shape, generator=g)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            x = 0.5 + 0.5 * x.abs()
        elif leaf == "running_mean" or leaf == "bias" or leaf.startswith("pos_bias"):
            x = 0.1 * x
        elif len(shape) == 1:
            x = 1.0 + 0.1 * x
        else:
            x = x / math.sqrt(math.prod(shape[1:]))
        state[name] = x.to(dtype)
    return state


def parity_inputs(seed: int = 7) -> tuple[Tensor, Tensor]:
    """(video (T, 88, 88) normalised grey frames, audio (T * 640,) raw waveform)."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(PARITY_FRAMES, 88, 88, generator=g)
    audio = 0.1 * torch.randn(PARITY_FRAMES * 640, generator=g) + 0.02
    return video, audio
