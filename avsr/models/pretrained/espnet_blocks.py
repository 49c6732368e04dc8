"""ESPnet-style layers for published models (auto_avsr), built from fairseq2's blocks and ours.

auto_avsr (mpc001/auto_avsr) is a vendored, trimmed ESPnet. Its layers map onto ours as follows;
where they compute the same thing, ours are reused, and each exception says why:

- Conformer block (macaron FFN, relative-position self-attention, convolution module, final
  LayerNorm): fairseq2's ``ConformerBlock``. ESPnet's ``EncoderLayer`` computes exactly
  ``x + 0.5 * FFN(LN(x))``, ``x + MHA(LN(x))``, ``x + Conv(LN(x))``, ``x + 0.5 * FFN(LN(x))``,
  ``LN(x)``. Its LayerNorms use eps 1e-12 (``_layer_norm``) and its FFNs use ReLU, as
  fairseq2's ``StandardFeedForwardNetwork`` does by default.
- Relative-position self-attention: fairseq2's ``RelativePositionSDPA`` with
  ``RelativePositionalEncoding``. This is ESPnet's ``RelPositionMultiHeadedAttention`` (the
  "latest" version, not the legacy one). Both use the same mirrored sinusoid table
  ``[S-1 ... 0 ... -(S-1)]`` with interleaved sin/cos channels, the same bias-free position
  projection, the u/v biases, the same ``rel_shift`` (pad one zero column, reshape, drop a row,
  keep the first S columns) and ``(ac + bd) / sqrt(d_k)``. The parity check against auto_avsr's
  own code confirms it (see ``auto_avsr.py``). fairseq2 has no dropout on these attention
  weights, which only matters for training.
- Convolution module: our own ``ConformerConvolution``. fairseq2's has no bias on its three
  convolutions, and ESPnet's have one.
- Decoder positions: our own ``ESPnetPositionEncoder``. fairseq2's ``SinusoidalPositionEncoder``
  puts the sines in the first half of the channels and the cosines in the second, with frequencies
  ``10000^(-i/(d/2-1))``. ESPnet interleaves them (sin on even channels, cos on odd) with
  frequencies ``10000^(-2i/d)``, and positions start at 0. A table is not a weight, so it cannot
  be converted: it has to be the one the model was trained with.
- Decoder layers: fairseq2's pre-LN ``StandardTransformerDecoderLayer`` (self-attention,
  cross-attention, FFN) with our incremental-decoding attention classes from ``avsr_model``. The
  output projection has a bias and the LayerNorms use eps 1e-12.
- Front-ends: the visual one is our ``VisualFrontEnd`` (3-D stem + ResNet-18 trunk with
  torchvision's names) with swish in place of ReLU in the trunk blocks, as auto_avsr has it. The
  audio one is our own ``AudioResNet1D`` (auto_avsr's 1-D ResNet-18 on the raw waveform:
  640 samples per frame). There is no 1-D ResNet in torchvision.

Padding: auto_avsr decodes one utterance at a time and never masks padding inside its
convolutions. Here every layer that mixes frames sees zeros past each item's length, which are
the same zeros it sees as its own padding on a lone item. A padded batch therefore gives each item
the output it gets alone, and a single utterance gives exactly auto_avsr's computation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from fairseq2.gang import create_fake_gangs
from fairseq2.models.conformer import ConformerBlock
from fairseq2.models.transformer import (
    CausalAttentionBias,
    IdentityBias,
    StandardFeedForwardNetwork,
    StandardMultiheadAttention,
    StandardTransformerDecoder,
    StandardTransformerDecoderLayer,
    StandardTransformerEncoder,
    TransformerEmbeddingFrontend,
    TransformerNormOrder,
    create_default_sdpa,
)
from fairseq2.models.transformer.sdpa.relative import RelativePositionalEncoding, RelativePositionSDPA
from fairseq2.nn import BatchLayout, IncrementalStateBag, Linear, PositionEncoder, StandardEmbedding, StandardLayerNorm
from torch import Tensor, nn

from avsr.models.avsr_model import DecoderSelfAttention, EncoderDecoderAttention, TokenDecoder, make_layout
from avsr.models.config import VisualConfig
from avsr.models.frontends import SAMPLES_PER_FRAME, lengths_to_mask
from avsr.models.visual import VisualFrontEnd

ESPNET_LAYER_NORM_EPS = 1e-12


def fs2_kwargs(device: torch.device) -> dict[str, Any]:
    """Single-process fake gangs (no tensor parallelism, no fairseq2 runtime) and the device
    (``meta`` works: shape checks build the full-size model without allocating it)."""
    return {"gangs": create_fake_gangs(torch.device("cpu")), "device": device}


def _layer_norm(dim: int, device: torch.device) -> StandardLayerNorm:
    return StandardLayerNorm(dim, bias=True, eps=ESPNET_LAYER_NORM_EPS, device=device)


def _mask(x: Tensor, lengths: Tensor) -> Tensor:
    """Zero (B, C, T) past each item's length."""
    return x * lengths_to_mask(lengths, x.size(-1))[:, None, :].to(x.dtype)


# ---------------------------------------------------------------------- encoder
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


class ConformerEncoder(nn.Module):
    """auto_avsr's encoder after its front-end: ``Linear(input -> d)``, scaled by ``sqrt(d)``
    (ESPnet's ``RelPositionalEncoding`` does this scaling), dropout, conformer blocks with
    relative-position self-attention, then a final LayerNorm. Padded positions of the output are
    zero."""

    def __init__(
        self,
        input_dim: int,
        model_dim: int,
        heads: int,
        ffn_dim: int,
        layers: int,
        conv_kernel: int,
        max_len: int,
        dropout: float,
        device: torch.device,
    ) -> None:
        super().__init__()
        d = model_dim
        self.proj = Linear(input_dim, d, bias=True, device=device)
        self.scale = math.sqrt(d)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        # One table for all layers (a non-persistent buffer: not in the state dict).
        positions = RelativePositionalEncoding(d, max_len, device=device)
        kw = fs2_kwargs(device)

        def ffn() -> StandardFeedForwardNetwork:
            return StandardFeedForwardNetwork(d, ffn_dim, bias=True, inner_dropout_p=dropout, **kw)

        blocks = []
        for _ in range(layers):
            sdpa = RelativePositionSDPA(d, heads, positions, IdentityBias(), device=device)
            with torch.device(device):
                conv = ConformerConvolution(d, conv_kernel)
            blocks.append(
                ConformerBlock(
                    _layer_norm(d, device),
                    ffn(),
                    _layer_norm(d, device),
                    StandardMultiheadAttention(d, heads, sdpa, **kw),
                    _layer_norm(d, device),
                    conv,  # type: ignore[arg-type]  # same interface as fairseq2's ConformerConvolution
                    _layer_norm(d, device),
                    ffn(),
                    _layer_norm(d, device),
                    dropout_p=dropout,
                    device=device,
                )
            )
        self.layers = StandardTransformerEncoder(blocks, _layer_norm(d, device))
        self.max_len = max_len

    def forward(self, seqs: Tensor, lengths: Tensor) -> Tensor:
        if seqs.size(1) > self.max_len:
            raise ValueError(
                f"input of {seqs.size(1)} frames is longer than the model's limit of {self.max_len} "
                "(config max_len; decode shorter segments)"
            )
        layout = make_layout(seqs, lengths)
        x = self.proj(seqs) * self.scale
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.layers(x, layout)
        return x * lengths_to_mask(lengths, x.size(1))[:, :, None].to(x.dtype)


# ---------------------------------------------------------------------- decoder
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
        div = torch.exp(
            torch.arange(0, d, 2, dtype=torch.float32, device=positions.device) * -(math.log(10000.0) / d)
        )
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


class ESPnetDecoder(TokenDecoder):
    """auto_avsr's transformer decoder: embedding * sqrt(d) + ESPnet positions -> pre-LN decoder
    layers (causal self-attention, cross-attention, ReLU FFN) -> LayerNorm -> Linear (with bias).

    The forward signature is our ``AttentionDecoder``'s (same incremental state: the encoder
    keys/values are kept once per utterance, see ``EncoderDecoderAttention``)."""

    def __init__(
        self, vocab_size: int, model_dim: int, heads: int, ffn_dim: int, layers: int, dropout: float, device: torch.device
    ) -> None:
        super().__init__()
        d = model_dim
        kw = fs2_kwargs(device)
        embed = StandardEmbedding(vocab_size, d, device=device)
        self.frontend = TransformerEmbeddingFrontend(d, embed, ESPnetPositionEncoder(d), dropout_p=dropout, device=device)
        blocks = []
        for _ in range(layers):
            self_attn = DecoderSelfAttention(d, heads, create_default_sdpa(CausalAttentionBias(), dropout_p=dropout), **kw)
            cross_attn = EncoderDecoderAttention(d, heads, create_default_sdpa(IdentityBias(), dropout_p=dropout), **kw)
            ffn = StandardFeedForwardNetwork(d, ffn_dim, bias=True, inner_dropout_p=dropout, **kw)
            blocks.append(
                StandardTransformerDecoderLayer(
                    self_attn, _layer_norm(d, device), cross_attn, _layer_norm(d, device), ffn, _layer_norm(d, device),
                    norm_order=TransformerNormOrder.PRE, dropout_p=dropout, device=device,
                )
            )
        self.layers = StandardTransformerDecoder(blocks, _layer_norm(d, device))
        self.final_proj = Linear(d, vocab_size, bias=True, device=device)



# ---------------------------------------------------------------------- front-ends
class SwishResNetFrontEnd(VisualFrontEnd):
    """auto_avsr's visual front-end: 3-D conv stem (5x7x7, BatchNorm, swish, max pooling) and a
    ResNet-18 trunk whose blocks use swish where torchvision's use ReLU. Input (B, T, H, W)
    normalised grey frames; output (B, T, 512 * width)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__(VisualConfig(trunk="resnet18", norm="batch", activation="silu", width=width))
        for layer in (self.trunk.layer1, self.trunk.layer2, self.trunk.layer3, self.trunk.layer4):
            for block in layer:
                block.relu = nn.SiLU()  # torchvision's BasicBlock applies self.relu twice


class BasicBlock1D(nn.Module):
    """ResNet basic block on (B, C, T) with swish; ``forward`` zeroes frames past the lengths
    (at the output rate) before the second convolution and at the output."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv1d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.act = nn.SiLU()
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv1d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm1d(channels)
            )

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        lengths = torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")
        out = _mask(self.act(self.bn1(self.conv1(x))), lengths)
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return _mask(self.act(out + residual), lengths), lengths


class AudioResNet1D(nn.Module):
    """auto_avsr's audio front-end (``Conv1dResNet``): raw 16 kHz waveform -> Conv1d(k=80, s=4)
    + BatchNorm + swish -> four stages of two basic blocks (strides 1, 2, 2, 2) -> average pooling
    over 20 steps. That is 640 samples per output frame (25 Hz) and 512 * width channels.

    Each item is cut to whole frames (``samples // 640``, as auto_avsr cuts the input), and
    everything past an item's length is zero at the input of every convolution.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        planes = [max(1, round(p * width)) for p in (64, 128, 256, 512)]
        self.conv1 = nn.Conv1d(1, planes[0], kernel_size=80, stride=4, padding=38, bias=False)
        self.bn1 = nn.BatchNorm1d(planes[0])
        self.act = nn.SiLU()
        stages = []
        inplanes = planes[0]
        for stage, channels in enumerate(planes):
            stride = 1 if stage == 0 else 2
            stages.append(nn.ModuleList([BasicBlock1D(inplanes, channels, stride), BasicBlock1D(channels, channels, 1)]))
            inplanes = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = 20
        self.output_dim = planes[-1]

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) float, (B,) samples -> ((B, T, output_dim), (B,) frames = samples // 640)."""
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S), got shape {tuple(waveform.shape)}")
        lengths = lengths.to(waveform.device)
        frames = torch.div(lengths, SAMPLES_PER_FRAME, rounding_mode="floor")
        if bool((frames < 1).any()):
            raise ValueError(f"audio shorter than one frame ({SAMPLES_PER_FRAME} samples at 16 kHz)")
        samples = frames * SAMPLES_PER_FRAME
        x = _mask(waveform[:, None, : int(samples.max())], samples)
        steps = torch.div(samples, 4, rounding_mode="floor")
        x = _mask(self.act(self.bn1(self.conv1(x))), steps)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x, steps = block(x, steps)
        x = F.avg_pool1d(x, self.pool, self.pool)[:, :, : int(frames.max())]
        return _mask(x, frames).transpose(1, 2), frames


class MLPFusion(nn.Module):
    """auto_avsr's audio-visual fusion (``MLPHead``): Linear(2d -> hidden) -> BatchNorm (or
    LayerNorm) -> ReLU -> Linear(hidden -> d), on the concatenated (video, audio) features."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, norm: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.kind = norm
        if norm == "batchnorm":
            self.norm: nn.Module = nn.BatchNorm1d(hidden_dim)
        elif norm == "layernorm":
            self.norm = nn.LayerNorm(hidden_dim)
        else:
            raise ValueError(f"fusion_norm must be batchnorm or layernorm, got {norm!r}")
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2) if self.kind == "batchnorm" else self.norm(x)
        return self.fc2(torch.relu(x))


__all__ = [
    "AudioResNet1D",
    "ConformerConvolution",
    "ConformerEncoder",
    "ESPnetDecoder",
    "ESPnetPositionEncoder",
    "MLPFusion",
    "SwishResNetFrontEnd",
]
