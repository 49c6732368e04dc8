"""auto_avsr's audio front-end (its ``Conv1dResNet``): a 1-D ResNet-18 on the raw waveform.

::

    (B, S) 16 kHz -> [per-utterance normalisation] -> Conv1d(1 -> 64w, k=80, s=4) + BatchNorm + swish
      -> layer1..layer4: two basic blocks each (strides 1, 2, 2, 2)   -> average pool over 20 steps
      -> (B, S // 640, 512w)                                             25 Hz, the video frame rate

Parameter names are auto_avsr's (``conv1``, ``bn1``, ``layerN.M.conv1`` ...) below ``trunk.``.
Padding: each item is cut to whole frames (as auto_avsr cuts its input) and everything past an
item's length is zero at the input of every convolution, so a padded item gets its lone output.
There is no 1-D ResNet in torchvision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsr.media.constants import SAMPLES_PER_FRAME
from avsr.models.config import ResNet1DAudioConfig
from avsr.nn.sequence import mask_channels_first, normalize_waveform


class BasicBlock1D(nn.Module):
    """ResNet basic block on (B, C, T) with swish; zeroes frames past the lengths (at the output
    rate) before the second convolution and at the output."""

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
        out = mask_channels_first(self.act(self.bn1(self.conv1(x))), lengths)
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return mask_channels_first(self.act(out + residual), lengths), lengths


class ResNet1DTrunk(nn.Module):
    """The convolutions of auto_avsr's ``Conv1dResNet`` (its ``trunk``)."""

    def __init__(self, width: float) -> None:
        super().__init__()
        planes = [max(1, round(p * width)) for p in (64, 128, 256, 512)]
        self.conv1 = nn.Conv1d(1, planes[0], kernel_size=80, stride=4, padding=38, bias=False)
        self.bn1 = nn.BatchNorm1d(planes[0])
        self.act = nn.SiLU()
        stages = []
        inplanes = planes[0]
        for stage, channels in enumerate(planes):
            stride = 1 if stage == 0 else 2
            stages.append(
                nn.ModuleList([BasicBlock1D(inplanes, channels, stride), BasicBlock1D(channels, channels, 1)])
            )
            inplanes = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.output_dim = planes[-1]

    def forward(self, x: Tensor, samples: Tensor) -> Tensor:
        """(B, 1, S) zero past ``samples`` -> (B, C, S / 320) before the pooling."""
        steps = torch.div(samples, 4, rounding_mode="floor")
        x = mask_channels_first(self.act(self.bn1(self.conv1(x))), steps)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x, steps = block(x, steps)
        return x


class ResNet1DAudioFrontEnd(nn.Module):
    """(waveform (B, S) float 16 kHz, lengths (B,) samples) -> (features (B, T, 512w), frames (B,)),
    ``T = S // 640``; see the module docstring."""

    POOL = 20

    def __init__(self, config: ResNet1DAudioConfig) -> None:
        super().__init__()
        self.normalize_eps = config.normalize_eps
        self.trunk = ResNet1DTrunk(config.width)
        self.output_dim = self.trunk.output_dim

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S), got shape {tuple(waveform.shape)}")
        lengths = lengths.to(waveform.device).clamp(max=waveform.size(1))
        if self.normalize_eps is not None:
            waveform = normalize_waveform(waveform, lengths, eps=self.normalize_eps)
        frames = torch.div(lengths, SAMPLES_PER_FRAME, rounding_mode="floor")
        if bool((frames < 1).any()):
            raise ValueError(f"audio shorter than one frame ({SAMPLES_PER_FRAME} samples at 16 kHz)")
        samples = frames * SAMPLES_PER_FRAME
        x = mask_channels_first(waveform[:, None, : int(samples.max())], samples)
        x = F.avg_pool1d(self.trunk(x, samples), self.POOL, self.POOL)[:, :, : int(frames.max())]
        return mask_channels_first(x, frames).transpose(1, 2), frames


__all__ = ["BasicBlock1D", "ResNet1DAudioFrontEnd", "ResNet1DTrunk"]
