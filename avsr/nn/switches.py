"""The one rule for speed switches that may be left unset: ``None`` means on for CUDA, off
elsewhere.

Mixed precision, ``torch.compile``, fused optimizers, fused attention and channels-last
convolutions pay off on a GPU and cost (compile time, rounding, slower CPU kernels) on a CPU, so
a config that does not say gets them where they help. Every switch (the model's
`avsr.models.config.KernelConfig`, training's ``performance`` section) is resolved here, so the
rule cannot drift between them.
"""

from __future__ import annotations

import torch


def switch_on(value: bool | None, device: torch.device | str) -> bool:
    """``value`` when set, else whether ``device`` is a CUDA device."""
    if value is not None:
        return bool(value)
    return torch.device(device).type == "cuda"


__all__ = ["switch_on"]
