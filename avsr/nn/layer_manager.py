"""Aggregating several layers of a frozen encoder into one feature vector (ManagerTower's idea).

A frozen encoder's last layer is not always its most useful one for a new task; a manager learns
how much of each layer to take. ``static``: one learned weight per layer and feature dimension
(ManagerTower's SAUE: per-layer LayerNorm, weights initialised to 1/L, softmax over the layers with
a learned temperature). ``adaptive``: the weights are computed per sample from the layers
themselves by a small linear controller (in the spirit of ManagerTower's AAUE, which conditions on
the other modality's cross-attention; two-tower alignment has no cross-modal state to condition
on). Both give a convex combination of the normalised layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

MANAGER_KINDS = ("static", "adaptive")


@dataclass
class LayerManagerConfig:
    kind: str = "static"
    #: static: one weight per layer and dimension ("vector", as ManagerTower) or per layer ("scalar").
    weight_type: str = "vector"

    def __post_init__(self) -> None:
        if self.kind not in MANAGER_KINDS:
            raise ValueError(f"manager kind: {self.kind!r} is not one of {', '.join(MANAGER_KINDS)}")
        if self.weight_type not in ("vector", "scalar"):
            raise ValueError(f"manager weight_type: {self.weight_type!r} is not one of vector, scalar")


class LayerManager(nn.Module):
    """``(B, L, D)`` per-layer features -> ``(B, D)``; ``layer_weights(x)`` gives the ``(B, L, D)``
    (or broadcastable) softmax weights, for reports."""

    def __init__(self, config: LayerManagerConfig, num_layers: int, dim: int) -> None:
        super().__init__()
        if num_layers < 1 or dim < 1:
            raise ValueError(f"manager: need >= 1 layer and dimension, got {num_layers} x {dim}")
        self.config = config
        self.num_layers = num_layers
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.log_temperature = nn.Parameter(torch.zeros(()))
        if config.kind == "static":
            width = dim if config.weight_type == "vector" else 1
            self.scores = nn.Parameter(torch.full((num_layers, width), 1.0 / num_layers))
            self.controller = None
        else:
            self.scores = None
            self.controller = nn.Linear(num_layers * dim, num_layers)
            nn.init.zeros_(self.controller.weight)
            nn.init.zeros_(self.controller.bias)

    def _normed(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.num_layers:
            raise ValueError(f"manager: expected (batch, {self.num_layers} layers, dim), got {tuple(x.shape)}")
        return torch.stack([norm(x[:, i]) for i, norm in enumerate(self.norms)], dim=1)

    def _weights(self, normed: Tensor) -> Tensor:
        temperature = self.log_temperature.exp()
        if self.scores is not None:
            return torch.softmax(self.scores / temperature, dim=0).unsqueeze(0)  # (1, L, D|1)
        assert self.controller is not None
        scores = self.controller(normed.flatten(1))  # (B, L)
        return torch.softmax(scores / temperature, dim=1).unsqueeze(-1)  # (B, L, 1)

    def layer_weights(self, x: Tensor) -> Tensor:
        return self._weights(self._normed(x))

    def forward(self, x: Tensor) -> Tensor:
        normed = self._normed(x)
        return (self._weights(normed) * normed).sum(dim=1)


__all__ = ["MANAGER_KINDS", "LayerManager", "LayerManagerConfig"]
