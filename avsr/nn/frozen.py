"""Frozen pretrained backbones: no gradients, no dropout or batch-norm updates, no autograd graph.

The AVSR models freeze parts of themselves (``AVSRConfig.freeze``; wav2vec 2.0's transformer for
the first steps of fine-tuning) and ``vision_language`` keeps whole image and text encoders frozen
while projectors train. Both go through this module so that "frozen" means the same everywhere:
``requires_grad`` off, eval mode kept across ``model.train()``, and the forward pass run without
building a graph (which is where most of the memory of a frozen backbone goes).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def set_trainable(params: Iterable[nn.Parameter], trainable: bool) -> None:
    for p in params:
        p.requires_grad_(trainable)


@dataclass(frozen=True)
class FreezeSchedule:
    """When a backbone trains: frozen while ``step < unfreeze_at_step``; ``None``: always frozen.
    (``0``: trainable from the start.)"""

    unfreeze_at_step: int | None = None

    def __post_init__(self) -> None:
        if self.unfreeze_at_step is not None and self.unfreeze_at_step < 0:
            raise ValueError(f"unfreeze_at_step must be >= 0, got {self.unfreeze_at_step}")

    def frozen_at(self, step: int) -> bool:
        return self.unfreeze_at_step is None or step < self.unfreeze_at_step


class FrozenBackbone(nn.Module):
    """Wraps a pretrained module as a fixed feature extractor (optionally fine-tuned from a step).

    While frozen: its parameters have ``requires_grad=False``, it stays in eval mode whatever
    ``train()`` says, and ``forward`` runs under ``torch.no_grad()``. ``set_step`` applies the
    schedule (call it before each optimiser step); ``trainable_parameters`` is what an optimiser
    should hold (everything that trains at some point).
    """

    def __init__(self, module: nn.Module, schedule: FreezeSchedule | None = None) -> None:
        super().__init__()
        self.module = module
        self.schedule = schedule or FreezeSchedule()
        self._frozen = True
        self.set_step(0)

    @property
    def frozen(self) -> bool:
        return self._frozen

    def set_step(self, step: int) -> None:
        self._frozen = self.schedule.frozen_at(step)
        set_trainable(self.module.parameters(), not self._frozen)
        if self._frozen:
            self.module.eval()
        else:
            self.module.train(self.training)

    def train(self, mode: bool = True) -> FrozenBackbone:
        super().train(mode)
        if self._frozen:
            self.module.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [] if self.schedule.unfreeze_at_step is None else list(self.module.parameters())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad() if self._frozen else nullcontext():
            return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """Attributes of the wrapped module (``output_dim``, ``preprocess``, ...) pass through."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)


__all__ = ["FreezeSchedule", "FrozenBackbone", "set_trainable"]
