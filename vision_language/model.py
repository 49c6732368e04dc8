"""The alignment model: a projector per side (optionally after a layer manager) and the loss.

The frozen encoders are not part of it: training reads their cached features (`vision_language.
cache`), and ``EncodedAligner`` puts them in front, wrapped as `avsr.nn.FrozenBackbone`, for
evaluation on raw data and for the benchmark that compares both ways of training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from avsr.nn import FrozenBackbone, LayerManager, LayerManagerConfig, ProjectorConfig, build_projector

LOSS_KINDS = ("infonce", "sigmoid")


@dataclass
class LossConfig:
    """``infonce``: CLIP's symmetric loss, learnable temperature (Freeze-Align: init 0.07).
    ``sigmoid``: SigLIP's pairwise loss, learnable scale and bias (SAIL: init 20 and -10)."""

    kind: str = "infonce"
    temperature: float = 0.07
    scale: float = 20.0
    bias: float = -10.0

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind: {self.kind!r} is not one of {', '.join(LOSS_KINDS)}")
        if not self.temperature > 0 or not self.scale > 0:
            raise ValueError("loss temperature and scale must be > 0")


@dataclass
class AlignerConfig:
    """Feature sizes come from the encoders (or their caches); the rest from the recipe."""

    image_dim: int = 0
    text_dim: int = 0
    #: > 1: the encoder gives that many layers per item and a layer manager combines them.
    image_layers: int = 1
    text_layers: int = 1
    embed_dim: int = 256
    image_projector: ProjectorConfig = field(default_factory=lambda: ProjectorConfig("mlp"))
    text_projector: ProjectorConfig = field(default_factory=lambda: ProjectorConfig("mlp"))
    image_manager: LayerManagerConfig = field(default_factory=LayerManagerConfig)
    text_manager: LayerManagerConfig = field(default_factory=LayerManagerConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        for name, kls in (
            ("image_projector", ProjectorConfig),
            ("text_projector", ProjectorConfig),
            ("image_manager", LayerManagerConfig),
            ("text_manager", LayerManagerConfig),
            ("loss", LossConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                try:
                    setattr(self, name, kls(**value))
                except TypeError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        for name in ("embed_dim", "image_layers", "text_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown aligner option(s): {', '.join(unknown)}")
        return cls(**data)


class ContrastiveLoss(nn.Module):
    """The configured loss with its learnable temperature or scale and bias; negatives gathered
    from every rank under DDP (`vision_language.losses`)."""

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        from vision_language.losses import InfoNCELoss, SigmoidLoss

        self.config = config
        self.inner = (
            InfoNCELoss(init_temperature=config.temperature)
            if config.kind == "infonce"
            else SigmoidLoss(init_scale=config.scale, init_bias=config.bias)
        )

    def forward(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        return self.inner(image_emb, text_emb)


class Aligner(nn.Module):
    """Cached (or freshly computed) features of both encoders -> L2-normalised shared embeddings."""

    def __init__(self, config: AlignerConfig) -> None:
        super().__init__()
        if config.image_dim < 1 or config.text_dim < 1:
            raise ValueError("aligner: image_dim and text_dim must be set (from the encoders or their caches)")
        self.config = config
        self.image_manager = (
            LayerManager(config.image_manager, config.image_layers, config.image_dim)
            if config.image_layers > 1
            else None
        )
        self.text_manager = (
            LayerManager(config.text_manager, config.text_layers, config.text_dim) if config.text_layers > 1 else None
        )
        self.image_proj = build_projector(config.image_projector, config.image_dim, config.embed_dim)
        self.text_proj = build_projector(config.text_projector, config.text_dim, config.embed_dim)
        self.loss = ContrastiveLoss(config.loss)

    @staticmethod
    def _embed(features: Tensor, manager: LayerManager | None, proj: nn.Module) -> Tensor:
        if manager is not None:
            features = manager(features)
        elif features.dim() == 3 and features.shape[1] == 1:
            features = features[:, 0]
        return F.normalize(proj(features), dim=-1)

    def embed_images(self, features: Tensor) -> Tensor:
        return self._embed(features, self.image_manager, self.image_proj)

    def embed_texts(self, features: Tensor) -> Tensor:
        return self._embed(features, self.text_manager, self.text_proj)

    def forward(self, image_features: Tensor, text_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, image embeddings, text embeddings) of a batch of pairs."""
        image_emb, text_emb = self.embed_images(image_features), self.embed_texts(text_features)
        return self.loss(image_emb, text_emb), image_emb, text_emb


class EncodedAligner(nn.Module):
    """Frozen encoders in front of an `Aligner`: raw images and texts -> embeddings (and loss)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, aligner: Aligner) -> None:
        super().__init__()
        self.image_encoder = FrozenBackbone(image_encoder)
        self.text_encoder = FrozenBackbone(text_encoder)
        self.aligner = aligner

    def image_features(self, images: list[Any]) -> Tensor:
        return self.image_encoder(self.image_encoder.preprocess(images))

    def text_features(self, texts: list[str]) -> Tensor:
        return self.text_encoder(self.text_encoder.preprocess(texts))

    def forward(self, images: list[Any], texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        return self.aligner(self.image_features(images), self.text_features(texts))


__all__ = ["LOSS_KINDS", "Aligner", "AlignerConfig", "EncodedAligner", "LossConfig"]
