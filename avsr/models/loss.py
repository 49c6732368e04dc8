"""Losses of the hybrid CTC/attention model (summed over tokens; the caller normalises)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PAD = -1  # padding value of target tensors


def ctc_loss_sum(log_probs: Tensor, lengths: Tensor, targets: Tensor, target_lens: Tensor, blank: int) -> Tensor:
    """CTC summed over the batch. log_probs (B, T, V) float, targets (B, L) padded with -1.

    Infeasible alignments (input shorter than the target needs) give 0 (``zero_infinity``).
    """
    safe = targets.clamp(min=0)  # padding values are ignored by ctc_loss but must be valid ids
    return F.ctc_loss(
        log_probs.float().transpose(0, 1),
        safe,
        lengths.to(torch.long),
        target_lens.to(torch.long),
        blank=blank,
        reduction="sum",
        zero_infinity=True,
    )


def label_smoothed_nll_sum(logits: Tensor, targets: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor, int]:
    """Cross-entropy with label smoothing summed over non-padding positions.

    logits (B, L, V), targets (B, L) padded with -1. Smoothing mass ``eps`` is spread uniformly
    over the V classes (torch's definition). Returns (loss_sum, num_correct, num_tokens).
    """
    flat_logits = logits.float().reshape(-1, logits.size(-1))
    flat_targets = targets.reshape(-1)
    loss = F.cross_entropy(
        flat_logits, flat_targets, ignore_index=PAD, label_smoothing=label_smoothing, reduction="sum"
    )
    valid = flat_targets != PAD
    with torch.no_grad():
        correct = (flat_logits.argmax(-1) == flat_targets) & valid
    return loss, correct.sum(), int(valid.sum())


def decoder_io(targets: Tensor, target_lens: Tensor, eos: int) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher-forcing tensors: input ``[eos] + y`` (padding filled with eos) and output ``y + [eos]``
    (padding -1), both (B, L+1), and their lengths ``target_lens + 1``."""
    batch, width = targets.shape
    lens = target_lens.to(targets.device)
    inputs = targets.new_full((batch, width + 1), eos)
    inputs[:, 1:] = torch.where(targets == PAD, torch.full_like(targets, eos), targets)
    outputs = targets.new_full((batch, width + 1), PAD)
    outputs[:, :width] = targets
    outputs[torch.arange(batch, device=targets.device), lens] = eos
    keep = torch.arange(width + 1, device=targets.device)[None, :] <= lens[:, None]
    outputs = torch.where(keep, outputs, torch.full_like(outputs, PAD))
    inputs = torch.where(keep, inputs, torch.full_like(inputs, eos))
    return inputs, outputs, lens + 1


__all__ = ["PAD", "ctc_loss_sum", "decoder_io", "label_smoothed_nll_sum"]
