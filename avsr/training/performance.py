"""The ``performance`` section of a training config: the speed switches, resolved for the
training device in one place and applied in one place, mostly onto fairseq2's own mechanisms.

=================  ==========================================================================
switch             what it turns on (None: on for CUDA, off on the CPU: `avsr.nn.switches`)
=================  ==========================================================================
autocast_bf16      ``trainer.mixed_precision``: bf16 autocast for forward and backward, fp32
                   weights and optimizer step (fairseq2's ``mode: auto``)
compile            ``model.compile``: fairseq2 calls the family's compiler (`compile_model`:
                   each layer compiled in place; the state-dict keys stay the same)
fused_optimizer    AdamW ``impl: fused`` (one kernel for all parameters)
sdpa               the model's ``kernels.sdpa``: conformer attention through the fused kernel
channels_last      the model's ``kernels.channels_last``: NHWC visual front-end
=================  ==========================================================================

The last two change how the model computes, not its weights; they stay unset (decided by the
device the model runs on) unless given, so an exported model uses them where it decodes. Each
switch is checked on the CPU against the plain path (``tests/avsr/training/test_performance.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, fields
from typing import Any

import torch
from fairseq2.recipe.config import AdamWConfig, MixedPrecisionConfig

from avsr.models.config import AVSRConfig, KernelConfig
from avsr.nn.switches import switch_on
from avsr.training.config_loading import TrainConfigError

log = logging.getLogger("avsr.training")


@dataclass(kw_only=True)
class PerformanceSection:
    """Speed switches; each ``None`` (the default) is on when training on CUDA, off on the CPU."""

    autocast_bf16: bool | None = None
    """bf16 autocast (sets ``trainer.mixed_precision`` when that is ``off``)."""
    compile: bool | None = None
    """``torch.compile`` the model (sets ``model.compile``; ``model.compile_options`` apply)."""
    fused_optimizer: bool | None = None
    """AdamW's fused implementation (when ``optimizer.config.impl`` is ``auto``)."""
    sdpa: bool | None = None
    """Relative-position attention through ``scaled_dot_product_attention`` (model ``kernels.sdpa``)."""
    channels_last: bool | None = None
    """Channels-last visual front-end (model ``kernels.channels_last``)."""


@dataclass(frozen=True)
class Performance:
    """The switches as they apply on one device (every one decided)."""

    autocast_bf16: bool
    compile: bool
    fused_optimizer: bool
    sdpa: bool
    channels_last: bool

    @classmethod
    def resolve(cls, section: PerformanceSection, device: torch.device | str) -> Performance:
        return cls(**{f.name: switch_on(getattr(section, f.name), device) for f in fields(cls)})


def training_device() -> torch.device:
    """The device fairseq2 trains on: the (first local) GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def apply_performance(
    config: Any, model_config: AVSRConfig, device: torch.device | str
) -> tuple[AVSRConfig, Performance]:
    """Set the training ``config``'s fairseq2 sections (in place) and the model config's kernels
    (returned) from ``config.performance`` on ``device``. One-line `TrainConfigError` where an
    explicit switch contradicts an explicit fairseq2 setting."""
    section: PerformanceSection = config.performance
    speed = Performance.resolve(section, device)
    mixed = config.trainer.mixed_precision
    if speed.autocast_bf16 and mixed.mode == "off":
        config.trainer.mixed_precision = MixedPrecisionConfig(mode="auto", dtype=torch.bfloat16)
    elif section.autocast_bf16 is False and mixed.mode != "off":
        raise TrainConfigError(
            f"performance.autocast_bf16: false contradicts trainer.mixed_precision.mode: {mixed.mode}"
        )
    if speed.compile:
        config.model.compile = True
    optimizer = config.optimizer.config
    if speed.fused_optimizer:
        if isinstance(optimizer, AdamWConfig):
            if optimizer.impl == "auto":
                optimizer.impl = "fused"
        elif section.fused_optimizer:
            raise TrainConfigError(
                f"performance.fused_optimizer: true needs optimizer.name: adamw, not {config.optimizer.name}"
            )
    kernels = model_config.kernels
    kernels = KernelConfig(
        sdpa=kernels.sdpa if section.sdpa is None else section.sdpa,
        channels_last=kernels.channels_last if section.channels_last is None else section.channels_last,
    )
    return dataclasses.replace(model_config, kernels=kernels), speed


def compile_model(model: Any, *args: Any, **kwargs: Any) -> None:
    """fairseq2's model-family compiler hook (``model.compile: true``; ``args``/``kwargs``:
    ``model.compile_options``): `AVSRModel.compile_layerwise`."""
    model.compile_layerwise(*args, **kwargs)


def describe(speed: Performance, device: torch.device | str) -> str:
    on = [f.name for f in fields(speed) if getattr(speed, f.name)]
    return f"performance on {torch.device(device).type}: " + (", ".join(on) if on else "plain (every switch off)")


__all__ = ["Performance", "PerformanceSection", "apply_performance", "compile_model", "describe", "training_device"]
