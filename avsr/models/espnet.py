"""ESPnet's blocks that published models (auto_avsr, a trimmed ESPnet) need and fairseq2 lacks.

Where ESPnet and fairseq2 compute the same thing, the model uses fairseq2's block (the conformer
block itself, relative-position self-attention: the same mirrored sinusoid table, u/v biases and
``rel_shift`` as ESPnet's "latest" ``RelPositionMultiHeadedAttention``). These two differ:

- the conformer convolution module: fairseq2's convolutions have no bias, ESPnet's do;
- the decoder's position table: fairseq2's ``SinusoidalPositionEncoder`` puts the sines in the
  first half of the channels with frequencies ``10000^(-i/(d/2-1))``; ESPnet interleaves them
  (sin on even channels) with ``10000^(-2i/d)``, positions from 0. A table is not a weight, so it
  cannot be converted: it has to be the one the model was trained with.

Parity with auto_avsr's own code: ``tests/avsr/models/pretrained/test_auto_avsr.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fairseq2.nn import BatchLayout, IncrementalStateBag, PositionEncoder
from torch import Tensor, nn

#: ESPnet's LayerNorm epsilon.
ESPNET_LAYER_NORM_EPS = 1e-12


class ConformerConvolution(nn.Module):
    """ESPnet's conformer convolution module: pointwise conv to 2d channels -> GLU -> depthwise
    conv -> BatchNorm -> swish -> pointwise conv, all convolutions with biases.

    Frames past each length are zeroed after the GLU. That is right before the depthwise
    convolution, the only layer here that mixes frames. The GLU of the padding is not zero
    (``pointwise_conv1`` has a bias), so zeroing the input would not be enough.
    """

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"conv_kernel must be odd, got {kernel}")
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, kernel_size=1)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(dim, dim, kernel_size=1)

    def forward(self, seqs: Tensor, seqs_layout: BatchLayout) -> Tensor:
        x = F.glu(self.pointwise_conv1(seqs.transpose(1, 2)), dim=1)
        if seqs_layout.padded:
            x = x * (seqs_layout.position_indices >= 0)[:, None, :].to(x.dtype)
        x = self.activation(self.batch_norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)


class ESPnetPositionEncoder(PositionEncoder):
    """ESPnet's ``PositionalEncoding`` table added to the (already scaled) embeddings:
    ``pe[p, 2i] = sin(p * 10000^(-2i/d))``, ``pe[p, 2i+1] = cos(...)``, positions from 0.
    Computed for the positions needed (incremental decoding: from ``state_bag.step_nr``)."""

    def __init__(self, encoding_dim: int) -> None:
        super().__init__(encoding_dim)
        if encoding_dim % 2:
            raise ValueError(f"encoding_dim must be even, got {encoding_dim}")

    def table(self, positions: Tensor) -> Tensor:
        """(...,) integer positions -> (..., E) float32 encodings."""
        d = self.encoding_dim
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=positions.device) * -(math.log(10000.0) / d))
        angles = positions.to(torch.float32)[..., None] * div
        return torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(-2)

    def forward(
        self, seqs: Tensor, seqs_layout: BatchLayout, *, state_bag: IncrementalStateBag | None = None
    ) -> Tensor:
        start = state_bag.step_nr if (state_bag is not None and not self.training) else 0
        if seqs_layout.padded or seqs_layout.packed:
            positions = seqs_layout.position_indices.clamp(min=0) + start
        else:
            positions = torch.arange(start, start + seqs.size(1), device=seqs.device)[None, :]
        return (seqs.float() + self.table(positions)).type_as(seqs)


__all__ = ["ESPNET_LAYER_NORM_EPS", "ConformerConvolution", "ESPnetPositionEncoder"]
