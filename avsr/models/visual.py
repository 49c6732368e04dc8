"""Visual front-end: a 3-D conv stem and a 2-D ResNet-18/50 trunk, one feature vector per frame.

Layout (as the seed paper's ``models/moco_visual_frontend.py`` and auto_avsr's ``resnet.py``)::

    (B, T, H, W) grey, normalised
      -> Conv3d(1 -> 64w, k=(5,7,7), s=(1,2,2), p=(2,3,3), no bias)       stem.conv
      -> norm (per frame) -> activation                                      stem.norm, stem.act
      -> MaxPool (1,3,3) stride (1,2,2) padding (0,1,1)                      (per frame)
      -> ResNet layer1..layer4 (torchvision BasicBlock / Bottleneck)        trunk.layer{1..4}
      -> global average pool -> (B, T, 512w) for ResNet-18, (B, T, 2048w) for ResNet-50

``w`` is ``VisualConfig.width``. Parameter names of ``trunk`` are torchvision's (``layer1.0.conv1``,
``layer1.0.bn1``, ``layer1.0.downsample.0`` ...), so torchvision-style checkpoints map one to one.

Padding: frames past an item's length are zeroed before the 3-D convolution (which then sees the
same zeros as its own padding), only valid frames go through the 2-D trunk and the norm layers
(so BatchNorm statistics never include padding), and outputs past the length are zero. A padded
item therefore gives the same features as alone (exactly so in eval mode).

Pretrained weights:

- MoCo v2 (``moco_v2_*ep_pretrain.pth.tar``): ``state_dict`` keys ``module.encoder_q.<torchvision
  resnet50 key>``. As the seed paper does, only ``layer1..layer4`` are taken: the seed *replaces*
  the 2-D RGB ``conv1``/``bn1``/``maxpool`` by its own grey 3-D stem (trained from scratch on LRW)
  and drops the ``fc`` MLP head. So ``conv1.*``/``bn1.*``/``fc.*`` are reported as unused and
  ``stem.*`` as left at initialisation. See ``load_moco_v2``.
- Our own exported front-ends (LRW stage) in safetensors: ``load_visual_frontend``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from avsr.models.config import VisualConfig
from avsr.nn.sequence import make_activation
from avsr.nn.switches import switch_on

_LAYERS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


def _group_count(channels: int, wanted: int) -> int:
    return math.gcd(channels, wanted)


def make_norm_2d(kind: str, groups: int) -> Callable[[int], nn.Module]:
    """A ``norm_layer`` factory for torchvision's blocks: BatchNorm2d or GroupNorm."""
    if kind == "batch":
        return nn.BatchNorm2d
    if kind == "group":
        return lambda c: nn.GroupNorm(_group_count(c, groups), c)
    raise ValueError(f"norm: {kind!r} is not one of batch, group")


class Stem3D(nn.Module):
    """Conv3d over (time, height, width), then per-frame norm, activation and 3x3/2 max pooling.

    The norm runs on the valid frames only, as a 2-D layer; its state-dict keys are the same as a
    BatchNorm3d's (weight, bias, running_mean, running_var, num_batches_tracked).
    """

    def __init__(self, channels: int, norm: Callable[[int], nn.Module], activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, channels, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.norm = norm(channels)
        self.act = make_activation(activation, channels)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, video: Tensor, mask: Tensor, channels_last: bool = False) -> Tensor:
        """video (B, T, H, W) zero past the lengths, mask (B, T) -> valid frames (N, C, H', W'),
        stored channels-last (NHWC) when ``channels_last``: the norm, the pooling and the trunk's
        convolutions then run on NHWC, the layout of cuDNN's tensor-core kernels. (The 3-D
        convolution's input has one grey channel, for which NCDHW and NDHWC are the same memory.)"""
        x = self.conv(video.unsqueeze(1))  # (B, C, T, H/2, W/2)
        x = x.transpose(1, 2)[mask]  # (N, C, H/2, W/2), valid frames only
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.pool(self.act(self.norm(x)))


class PReLUBasicBlock(BasicBlock):
    """torchvision's BasicBlock with two PReLUs of one slope per channel, after the first
    convolution (``relu1``) and after the sum (``relu2``), as AV-HuBERT's ResNet-18 has them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        planes = self.bn2.num_features
        del self.relu
        self.relu1 = nn.PReLU(planes)
        self.relu2 = nn.PReLU(planes)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + identity)


class ResNetTrunk(nn.Module):
    """torchvision's ResNet ``layer1..layer4`` (names and init as torchvision) + global average pool."""

    def __init__(
        self,
        trunk: str,
        in_channels: int,
        width: float,
        norm: Callable[[int], nn.Module],
        block_activation: str = "relu",
    ) -> None:
        super().__init__()
        block, counts = _LAYERS[trunk]
        if block_activation == "prelu":
            if block is not BasicBlock:
                raise ValueError(f"block_activation prelu: only for resnet18's basic blocks, not {trunk}")
            block = PReLUBasicBlock
        self.inplanes = in_channels
        planes = [max(1, round(p * width)) for p in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(block, planes[0], counts[0], 1, norm)
        self.layer2 = self._make_layer(block, planes[1], counts[1], 2, norm)
        self.layer3 = self._make_layer(block, planes[2], counts[2], 2, norm)
        self.layer4 = self._make_layer(block, planes[3], counts[3], 2, norm)
        self.output_dim = planes[3] * block.expansion
        del self.inplanes
        if block_activation not in (
            "relu",
            "prelu",
        ):  # torchvision's blocks apply their ``relu`` after each norm and the sum
            for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
                for b in layer:
                    b.relu = make_activation(block_activation, 0)

    def _make_layer(
        self, block: type[nn.Module], planes: int, count: int, stride: int, norm: Callable[[int], nn.Module]
    ) -> nn.Sequential:
        expansion = block.expansion  # type: ignore[attr-defined]
        downsample = None
        if stride != 1 or self.inplanes != planes * expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * expansion, kernel_size=1, stride=stride, bias=False),
                norm(planes * expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer=norm)]
        self.inplanes = planes * expansion
        layers += [block(self.inplanes, planes, norm_layer=norm) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


class VisualFrontEnd(nn.Module):
    """(video (B, T, H, W) float, lengths (B,) frames) -> (features (B, T, output_dim), lengths).

    Input: grey mouth crops (88x88 or 112x112; any size >= 32 works), already normalised
    ((x/255 - mean) / std, e.g. 0.421/0.165 as auto_avsr or 0.4161/0.1688 as the seed on LRS2).
    ``channels_last`` (None: on for CUDA inputs) is set by the model from ``AVSRConfig.kernels``.
    """

    channels_last: bool | None = None

    def __init__(self, config: VisualConfig) -> None:
        super().__init__()
        self.config = config
        norm = make_norm_2d(config.norm, config.norm_groups)
        stem_channels = max(1, round(64 * config.width))
        self.stem = Stem3D(stem_channels, norm, config.activation)
        self.trunk = ResNetTrunk(config.trunk, stem_channels, config.width, norm, config.block_activation)
        self.output_dim = self.trunk.output_dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's ResNet initialisation (Kaiming fan-out for convs, unit/zero norms)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if video.dim() == 5 and video.size(2) == 1:
            video = video.squeeze(2)
        if video.dim() != 4:
            raise ValueError(f"video must be (B, T, H, W) grey frames, got shape {tuple(video.shape)}")
        batch, width = video.shape[:2]
        lengths = lengths.to(video.device).clamp(max=width)
        mask = torch.arange(width, device=video.device)[None, :] < lengths[:, None]
        video = video * mask[:, :, None, None].to(video.dtype)
        if self.config.downsample > 1:
            video = F.avg_pool2d(
                video, self.config.downsample
            )  # pools each frame: (B, T) are the batch dims of a 4-D input
        frames = self.trunk(self.stem(video, mask, switch_on(self.channels_last, video.device)))  # (N_valid, D)
        out = frames.new_zeros(batch, width, self.output_dim)
        out[mask] = frames
        return out, lengths


# ---------------------------------------------------------------------- loading
#: MoCo v2 / torchvision ResNet keys that the seed deliberately does not use, with the reason.
MOCO_UNUSED_REASONS = {
    "conv1.": "2-D RGB 7x7 stem, replaced by our grey 3-D stem (as the seed paper)",
    "bn1.": "norm of the replaced 2-D stem",
    "fc.": "MoCo projection head / classifier, not part of the trunk",
}


def load_moco_v2(frontend: VisualFrontEnd, path: str | os.PathLike[str]):
    """Load a MoCo v2 checkpoint's query encoder into ``frontend.trunk`` (strict on the trunk).

    Accepts ``{"state_dict": {...}}`` or a bare state dict, with or without the DDP ``module.``
    prefix; keys under ``encoder_q.`` are used (``encoder_k`` and the queue are ignored). Every
    trunk key must be found; ``stem.*`` stays at its initialisation (reported). Returns the
    ``LoadReport``.
    """
    from avsr.models.weights import load_frontend_weights

    if frontend.config.trunk != "resnet50" or frontend.config.width != 1.0 or frontend.config.norm != "batch":
        raise ValueError(
            f"{os.fspath(path)}: MoCo v2 weights need visual trunk resnet50, width 1.0, norm batch "
            f"(got {frontend.config.trunk}, width {frontend.config.width}, norm {frontend.config.norm})"
        )
    prefix_map = {}
    for base in ("module.encoder_q.", "encoder_q."):
        for layer in range(1, 5):
            prefix_map[f"{base}layer{layer}."] = f"trunk.layer{layer}."
    return load_frontend_weights(
        frontend,
        path,
        prefix_map,
        allow_missing=("stem.",),
        missing_reason="own 3-D grey stem, not in an image MoCo checkpoint (trained on LRW, as the seed)",
        unused_reasons={
            f"{b}{k}": v for b in ("module.encoder_q.", "encoder_q.") for k, v in MOCO_UNUSED_REASONS.items()
        },
        ignore_prefixes=("module.encoder_k.", "encoder_k.", "queue", "module.queue"),
    )


def load_visual_frontend(frontend: VisualFrontEnd, path: str | os.PathLike[str], prefix: str = ""):
    """Load one of our exported visual front-ends (safetensors), strictly.

    ``prefix`` is the key prefix in the file (e.g. ``"visual_frontend."`` for a whole AVSR model's
    weights, or ``""`` for a file holding just the front-end); keys outside it are ignored.
    """
    from avsr.models.weights import load_frontend_weights

    return load_frontend_weights(frontend, path, {prefix: ""}, ignore_unmapped=bool(prefix))


__all__ = [
    "MOCO_UNUSED_REASONS",
    "PReLUBasicBlock",
    "ResNetTrunk",
    "Stem3D",
    "VisualFrontEnd",
    "load_moco_v2",
    "load_visual_frontend",
]
