"""Multi-process training on the CPU with BatchNorm layers.

fairseq2's DDP wrapper always turns BatchNorm into SyncBatchNorm, which runs only on CUDA/XPU, so a
ResNet front-end or MoCo's BatchNorm head cannot train with ``torchrun`` on the CPU. There the
layers are turned back into BatchNorm with per-process statistics, what BatchNorm under DDP does
without synchronisation (MoCo v2's own setting); on accelerators SyncBatchNorm stays.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class RankLocalBatchNorm(_BatchNorm):
    """BatchNorm over this process's batch only, for inputs of any rank (as SyncBatchNorm takes)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")


def keep_batch_norm_local(module: nn.Module) -> int:
    """Turn every SyncBatchNorm in ``module`` into :class:`RankLocalBatchNorm` in place (same
    parameters, buffers and hooks, so DDP's gradient hooks stay); returns how many."""
    count = 0
    for layer in module.modules():
        if isinstance(layer, nn.SyncBatchNorm):
            layer.__class__ = RankLocalBatchNorm
            count += 1
    return count


def data_parallel_model(context: Any) -> nn.Module:
    """``context.get_data_parallel_model()``, with BatchNorm kept per process on the CPU."""
    model = context.get_data_parallel_model()
    if context.gangs.dp.size > 1 and context.device.type == "cpu":
        count = keep_batch_norm_local(model)
        if count:
            logging.getLogger("avsr.training").info(
                f"CPU DDP: {count} BatchNorm layers keep per-process statistics (SyncBatchNorm needs CUDA)."
            )
    return model
