"""Frozen image and text encoders whose features the projectors align (CLIP-style)."""

from __future__ import annotations

from vision_language.encoders.config import ImageEncoderConfig, TextEncoderConfig
from vision_language.encoders.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HFImageEncoder,
    ImageEncoder,
    TorchvisionCNNEncoder,
    TorchvisionViTEncoder,
    build_image_encoder,
)
from vision_language.encoders.text import TextEncoder, build_text_encoder, minilm_path, pool_tokens

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HFImageEncoder",
    "ImageEncoder",
    "ImageEncoderConfig",
    "TextEncoder",
    "TextEncoderConfig",
    "TorchvisionCNNEncoder",
    "TorchvisionViTEncoder",
    "build_image_encoder",
    "build_text_encoder",
    "minilm_path",
    "pool_tokens",
]
