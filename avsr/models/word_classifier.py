"""LRW-style word classification: the visual front-end, a temporal model over the clip's frames,
an average over the frames and a linear layer to one score per word.

The seed paper trains its visual front-end this way on LRW (29 frames, 500 words) before the
sentence-level stages; ``frontend`` has the same parameter names as ``AVSRModel.visual_frontend``,
so the LRS2 recipe initialises from it with strict key matching (``model.init_from``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from avsr.models.avsr_model import SequenceEncoder
from avsr.models.config import ConfigError, EncoderConfig, VisualConfig, from_plain, to_plain


@dataclass
class WordClassifierConfig:
    num_classes: int
    visual: VisualConfig = field(default_factory=VisualConfig)
    backend: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(kind="conformer", layers=2, model_dim=256, heads=4, ffn_dim=1024)
    )
    dropout: float = 0.1
    """Dropout before the classifier."""

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordClassifierConfig:
        return from_plain(cls, data, "")


class WordClassifier(nn.Module):
    """(video (B, T, H, W) normalised grey crops, lengths (B,)) -> word logits (B, num_classes)."""

    def __init__(self, config: WordClassifierConfig) -> None:
        super().__init__()
        from avsr.models.frontends import build_visual_frontend

        self.config = config
        self.frontend = build_visual_frontend(config.visual)
        self.backend = SequenceEncoder(config.backend, int(self.frontend.output_dim))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(config.backend.model_dim, config.num_classes)

    def forward(self, video: Tensor, lengths: Tensor) -> Tensor:
        features, lengths = self.frontend(video, lengths)
        encoded = self.backend(features, lengths)  # zero past each clip's length
        pooled = encoded.sum(dim=1) / lengths.clamp(min=1).to(encoded.dtype)[:, None]
        return self.classifier(self.dropout(pooled))


__all__ = ["WordClassifier", "WordClassifierConfig"]
