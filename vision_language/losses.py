"""Contrastive losses that align image and text embeddings: CLIP's symmetric InfoNCE (Freeze-Align)
and SigLIP's pairwise sigmoid loss (SAIL), both able to use the negatives of every process.

Multi-process training. With ``gather=True`` and ``torch.distributed`` initialised (world size W,
local batch B), each rank gathers the embeddings of all ranks (N = W * B columns) and scores only
its own B rows against them: rank r's row i has its positive at column ``r * B + i``. The value a
rank returns is its *share* of the global loss: the mean of the W rank losses equals the loss one
process would compute on the whole batch of N (each rank pays B x N logits, not N x N).

What this requires of the gradient averaging (DDP). The all-gather is differentiable
(``torch.distributed.nn.functional.all_gather``) and its backward *sums* over ranks the gradients
that every rank's loss sends to a slice, so the gradient reaching rank r's own embeddings is
``sum_r' dL_r'/dx_r = W * dL/dx_r`` (L the single-process loss). DDP divides the summed parameter
gradients by W, which cancels that factor exactly: the parameters get ``dL/dtheta``, as on one
process with the whole batch. Hence: do not rescale the loss by W, use the differentiable gather
(``torch.distributed.all_gather`` returns no gradient for the other ranks' slices), and keep the
loss's own parameters (temperature, scale, bias) inside the DDP module (or average their
gradients by hand), since each rank's gradient for them is only its local share. All ranks must
have the same local batch size (drop the last incomplete batch).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsr.nn.distributed import gather_across_ranks, rank_and_world

__all__ = ["InfoNCELoss", "SigmoidLoss", "build_loss", "gather_across_ranks"]


def _check_pair(image_emb: Tensor, text_emb: Tensor, name: str = "text_emb") -> None:
    if image_emb.dim() != 2 or text_emb.dim() != 2:
        raise ValueError(
            f"embeddings must be 2-D (batch, dim), got image_emb {tuple(image_emb.shape)} and {name} {tuple(text_emb.shape)}"
        )
    if image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb {tuple(image_emb.shape)} and {name} {tuple(text_emb.shape)} must have the same shape (one {name} row per image)"
        )
    if image_emb.size(0) == 0:
        raise ValueError("empty batch")


def _positive_columns(local: int, gathered: int, device: torch.device) -> Tensor:
    """Column of each local row's positive among the gathered columns: ``rank * B + i``."""
    if gathered == local:
        return torch.arange(local, device=device)
    rank, world = rank_and_world()
    if gathered != world * local:
        raise ValueError(
            f"gathered {gathered} rows from {world} ranks with a local batch of {local}: every rank needs the same batch size"
        )
    return torch.arange(local, device=device) + rank * local


class InfoNCELoss(nn.Module):
    """Symmetric CLIP loss: the mean of the image->text and text->image cross-entropies over the
    cosine similarities divided by a learnable temperature (Freeze-Align: init 0.07, clamped to
    [0.001, 0.5] before every use, so an optimiser step past the bounds cannot stick there)."""

    def __init__(
        self,
        init_temperature: float = 0.07,
        *,
        min_temperature: float = 0.001,
        max_temperature: float = 0.5,
        learnable: bool = True,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= init_temperature <= max_temperature:
            raise ValueError(
                f"need 0 < min_temperature <= init_temperature <= max_temperature, got {min_temperature}, {init_temperature}, {max_temperature}"
            )
        self.temperature = nn.Parameter(torch.tensor(float(init_temperature)), requires_grad=learnable)
        self.min_temperature, self.max_temperature = float(min_temperature), float(max_temperature)
        self.gather = gather

    def forward(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        _check_pair(image_emb, text_emb)
        with torch.no_grad():
            self.temperature.clamp_(self.min_temperature, self.max_temperature)
        image = F.normalize(image_emb, dim=-1)
        text = F.normalize(text_emb, dim=-1)
        all_image = gather_across_ranks(image) if self.gather else image
        all_text = gather_across_ranks(text) if self.gather else text
        targets = _positive_columns(image.size(0), all_text.size(0), image.device)
        logits_i2t = image @ all_text.t() / self.temperature
        logits_t2i = text @ all_image.t() / self.temperature
        return 0.5 * (F.cross_entropy(logits_i2t, targets) + F.cross_entropy(logits_t2i, targets))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():.4g}, gather={self.gather}"


class SigmoidLoss(nn.Module):
    """SigLIP/SAIL pairwise loss: every (image, text) pair is a binary problem, label +1 for the
    matching pair and -1 otherwise, logit ``exp(log_scale) * cos + bias``. The scale starts at 20
    and the bias at -10 (SAIL), so the many negatives start near zero loss; the log scale is
    clamped to [0, ln 100] before every use (SAIL clamps after every step: same values).

    ``reduction="mean"`` averages over all B^2 (local B x N) entries as SAIL does;
    ``"sum_over_batch"`` is the SigLIP paper's sum divided by the batch size.
    """

    def __init__(
        self,
        init_scale: float = 20.0,
        init_bias: float = -10.0,
        *,
        max_scale: float = 100.0,
        reduction: Literal["mean", "sum_over_batch"] = "mean",
        learnable: bool = True,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if not 1.0 <= init_scale <= max_scale:
            raise ValueError(
                f"need 1 <= init_scale <= max_scale (the log scale lives in [0, ln max_scale]), got {init_scale}, {max_scale}"
            )
        if reduction not in ("mean", "sum_over_batch"):
            raise ValueError(f"reduction must be 'mean' or 'sum_over_batch', got {reduction!r}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)), requires_grad=learnable)
        self.bias = nn.Parameter(torch.tensor(float(init_bias)), requires_grad=learnable)
        self.max_log_scale = math.log(max_scale)
        self.reduction = reduction
        self.gather = gather

    @property
    def scale(self) -> float:
        return math.exp(min(max(self.log_scale.item(), 0.0), self.max_log_scale))

    def _pair_loss(self, image: Tensor, text: Tensor) -> Tensor:
        """Loss of the local (normalised) image rows against the text columns of every rank."""
        all_text = gather_across_ranks(text) if self.gather else text
        logits = self.log_scale.exp() * (image @ all_text.t()) + self.bias
        labels = -torch.ones_like(logits)
        rows = torch.arange(image.size(0), device=image.device)
        labels[rows, _positive_columns(image.size(0), all_text.size(0), image.device)] = 1.0
        losses = -F.logsigmoid(labels * logits)
        if self.reduction == "mean":
            return losses.mean()
        return losses.sum() / image.size(0)

    def forward(self, image_emb: Tensor, text_emb: Tensor, extra_text_emb: Tensor | None = None) -> Tensor:
        """``extra_text_emb``: a second caption per image (SAIL's multi-positive: raw and
        re-captioned text); the loss is then the average of the two caption sets' losses."""
        _check_pair(image_emb, text_emb)
        if extra_text_emb is not None:
            _check_pair(image_emb, extra_text_emb, "extra_text_emb")
        with torch.no_grad():
            self.log_scale.clamp_(0.0, self.max_log_scale)
        image = F.normalize(image_emb, dim=-1)
        loss = self._pair_loss(image, F.normalize(text_emb, dim=-1))
        if extra_text_emb is not None:
            loss = 0.5 * (loss + self._pair_loss(image, F.normalize(extra_text_emb, dim=-1)))
        return loss

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale:.4g}, bias={self.bias.item():.4g}, reduction={self.reduction!r}, gather={self.gather}"
        )


def build_loss(kind: Literal["infonce", "sigmoid"], **options: Any) -> InfoNCELoss | SigmoidLoss:
    """The loss named in a config (``options`` go to its constructor)."""
    if kind == "infonce":
        return InfoNCELoss(**options)
    if kind == "sigmoid":
        return SigmoidLoss(**options)
    raise ValueError(f"unknown loss kind {kind!r}: expected 'infonce' or 'sigmoid'")
