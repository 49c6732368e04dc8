"""Small pieces every model family's layers share: padding masks, per-utterance waveform
normalisation and activations by name. Shapes: B items, T frames (or S samples), C channels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = ("relu", "prelu", "silu")


def lengths_to_mask(lengths: Tensor, width: int) -> Tensor:
    """(B,) lengths -> (B, width) bool, True on valid positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def mask_channels_first(x: Tensor, lengths: Tensor) -> Tensor:
    """Zero (B, C, T) past each item's length (what a lone item's convolution padding sees)."""
    return x * lengths_to_mask(lengths, x.size(-1))[:, None, :].to(x.dtype)


def normalize_waveform(waveform: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """(B, S) -> zero mean, unit variance per utterance over its valid samples; padding is zero."""
    mask = lengths_to_mask(lengths, waveform.size(1)).to(waveform.dtype)
    n = lengths.clamp(min=1).to(waveform.dtype)[:, None]
    mean = (waveform * mask).sum(1, keepdim=True) / n
    var = (((waveform - mean) * mask) ** 2).sum(1, keepdim=True) / n
    return (waveform - mean) / torch.sqrt(var + eps) * mask


def make_activation(name: str, channels: int) -> nn.Module:
    """relu, prelu (one slope per channel) or silu."""
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"activation: {name!r} is not one of {', '.join(ACTIVATIONS)}")


__all__ = ["ACTIVATIONS", "lengths_to_mask", "make_activation", "mask_channels_first", "normalize_waveform"]
