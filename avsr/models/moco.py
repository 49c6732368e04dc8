"""MoCo v2 (He et al. 2020; Chen et al. 2020) for lip video: self-supervised pretraining of the
visual front-end on unlabelled mouth crops.

Two augmented views of the same clip go through a query encoder and a key encoder (the visual
front-end, a masked mean over frames, and a 2-layer MLP projection head); the key encoder is an
exponential moving average of the query encoder and gets no gradient. The loss is InfoNCE: the
query must pick its own key among the keys of earlier batches, kept in a first-in first-out queue.

The front-end's weights (``query_frontend``) are what later stages load; the projection head
is dropped, as in MoCo. Under DDP the keys of all ranks are gathered before they are queued, so
every rank holds the same queue, as in MoCo. Not done: MoCo's "shuffle BN" (shuffling the key
batch across ranks so BatchNorm statistics cannot leak which key is whose); BatchNorm statistics
are per rank (synchronised on GPUs by fairseq2, local on the CPU: :mod:`avsr.training.ddp`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsr.models.config import ConfigError, VisualConfig
from avsr.models.visual import VisualFrontEnd
from avsr.nn.distributed import gather_rows


@dataclass
class MoCoConfig:
    projection_dim: int = 128
    """Size of the embeddings compared by the loss (MoCo: 128)."""
    hidden_dim: int | None = None
    """Hidden width of the projection MLP; ``None``: the front-end's output size (MoCo v2: 2048)."""
    queue_size: int = 4096
    """Negative keys kept (MoCo: 65536 on ImageNet; a few thousand suit a small corpus)."""
    momentum: float = 0.999
    """Key encoder = momentum * key encoder + (1 - momentum) * query encoder, after every step."""
    temperature: float = 0.2
    """Softmax temperature of InfoNCE (MoCo v2: 0.2)."""
    head_batch_norm: bool = True
    """BatchNorm in the projection head (MoCo v3); false: MoCo v2's plain MLP."""

    def __post_init__(self) -> None:
        if self.projection_dim < 1 or self.queue_size < 1 or (self.hidden_dim is not None and self.hidden_dim < 1):
            raise ConfigError("projection_dim, queue_size and hidden_dim must be >= 1")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")

    @property
    def min_batch_size(self) -> int:
        """Clips a training batch needs: the head's BatchNorm normalises over the batch (B, D),
        which one clip cannot do ("Expected more than 1 value per channel")."""
        return 2 if self.head_batch_norm else 1


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> nn.Module:
    """MoCo v2's MLP head (Linear -> ReLU -> Linear), with BatchNorm after the first layer as in
    MoCo v3 unless ``batch_norm`` is false. Measured: with the GroupNorm front-ends of the small
    recipes, whose pooled features hardly differ between clips at initialisation, the plain head
    collapses every clip to one embedding within a few dozen steps; the normalised head learns."""
    norm: list[nn.Module] = [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), *norm, nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def clip_embedding(frontend: VisualFrontEnd, video: Tensor, lengths: Tensor) -> Tensor:
    """(B, T, H, W) -> (B, D): the front-end's per-frame features averaged over the valid frames."""
    features, lengths = frontend(video, lengths)
    valid = (torch.arange(features.size(1), device=features.device)[None, :] < lengths[:, None]).to(features.dtype)
    return (features * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0)


class MoCo(nn.Module):
    """Query and key encoders, the key queue and the InfoNCE loss; :meth:`forward` is one step."""

    def __init__(self, visual: VisualConfig, config: MoCoConfig) -> None:
        super().__init__()
        self.config = config
        self.query_frontend = VisualFrontEnd(visual)
        dim = int(self.query_frontend.output_dim)
        self.query_head = projection_head(dim, config.hidden_dim or dim, config.projection_dim, config.head_batch_norm)
        self.key_frontend = copy.deepcopy(self.query_frontend)
        self.key_head = copy.deepcopy(self.query_head)
        for p in self._key_parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.projection_dim), dim=1))
        self.register_buffer("queue_next", torch.zeros((), dtype=torch.long))
        """Row of ``queue`` the next key goes to (the oldest key)."""

    def _key_parameters(self) -> list[nn.Parameter]:
        return [*self.key_frontend.parameters(), *self.key_head.parameters()]

    def _query_parameters(self) -> list[nn.Parameter]:
        return [*self.query_frontend.parameters(), *self.query_head.parameters()]

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key <- m * key + (1 - m) * query, for every parameter; buffers (norm statistics) copied."""
        m = self.config.momentum
        for key, query in zip(self._key_parameters(), self._query_parameters()):
            key.mul_(m).add_(query.detach(), alpha=1.0 - m)
        for key_module, query_module in ((self.key_frontend, self.query_frontend), (self.key_head, self.query_head)):
            for key, query in zip(key_module.buffers(), query_module.buffers()):
                key.copy_(query)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Put ``keys`` (N, projection_dim) in the queue, replacing the oldest (first in, first out)."""
        size = self.queue.size(0)
        keys = keys.detach().to(self.queue.dtype)[-size:]
        rows = (int(self.queue_next) + torch.arange(keys.size(0), device=keys.device)) % size
        self.queue[rows] = keys
        self.queue_next.fill_((int(self.queue_next) + keys.size(0)) % size)

    def embed_queries(self, video: Tensor, lengths: Tensor) -> Tensor:
        return F.normalize(self.query_head(clip_embedding(self.query_frontend, video, lengths)), dim=1)

    @torch.no_grad()
    def embed_keys(self, video: Tensor, lengths: Tensor) -> Tensor:
        return F.normalize(self.key_head(clip_embedding(self.key_frontend, video, lengths)), dim=1)

    def forward(
        self, query_view: Tensor, key_view: Tensor, lengths: Tensor, key_lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One MoCo step on two views of the same B clips: (loss, accuracy of picking the own key).

        In training mode the key encoder is first moved towards the query encoder and the new
        keys are queued after the loss is computed (so a clip's key is never its own negative)."""
        queries = self.embed_queries(query_view, lengths)
        if self.training:
            self.momentum_update()
        keys = self.embed_keys(key_view, lengths if key_lengths is None else key_lengths)
        positive = (queries * keys).sum(dim=1, keepdim=True)
        negative = queries @ self.queue.clone().t()
        logits = torch.cat([positive, negative], dim=1) / self.config.temperature
        target = torch.zeros(logits.size(0), dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits, target)
        # strictly above every negative: when the embeddings collapse all logits tie, and an argmax
        # would count the tie as a hit (it picks the first index, the positive)
        accuracy = (logits[:, 0] > logits[:, 1:].max(dim=1).values).float().mean()
        if self.training:
            self.enqueue(gather_rows(keys))
        return loss, accuracy


__all__ = ["MoCo", "MoCoConfig", "clip_embedding", "projection_head"]
