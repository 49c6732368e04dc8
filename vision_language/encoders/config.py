"""Configs of the frozen image and text encoders.

Plain dataclasses of YAML types (lists are turned into tuples where a tuple is meant), checked on
construction so that a bad recipe fails before any model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

IMAGE_SOURCES = ("torchvision", "huggingface")
IMAGE_FEATURES = ("cls", "mean", "concat", "layers")
LAYER_POOLINGS = ("cls", "mean")
TEXT_POOLINGS = ("auto", "mean", "cls", "max", "last")
TEXT_FEATURES = ("pooled", "layers")
DEFAULT_NUM_LAYERS = 6  # ManagerTower aggregates the top 6 layers of each encoder

# torchvision families whose pooled features and blocks this package knows how to take; the class
# name "VisionTransformer" builds a ViT from `model_kwargs` alone (tiny test models).
TORCHVISION_FAMILIES = ("mobilenet_v2", "mobilenet_v3_", "resnet", "wide_resnet", "efficientnet_", "vit_")
TORCHVISION_VIT_CLASS = "VisionTransformer"


def _check_layers(layers: list[int] | None, features: str, wanted: str) -> list[int] | None:
    if layers is None:
        return None
    if features != wanted:
        raise ValueError(f"layers is only used with features={wanted!r}, not {features!r}")
    layers = list(layers)
    if not layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ValueError(f"layers must be a non-empty list of ints, got {layers!r}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has duplicates: {layers!r}")
    return layers


def _check_triple(name: str, value: Any, positive: bool) -> tuple[float, float, float] | None:
    if value is None:
        return None
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (RGB), got {len(values)}")
    if positive and min(values) <= 0:
        raise ValueError(f"{name} values must be positive, got {values}")
    return values  # type: ignore[return-value]


def resolve_layers(layers: list[int] | None, num_blocks: int, what: str) -> list[int]:
    """Indices into a hidden-states list of ``num_blocks + 1`` entries (0 = embedding output,
    k = output of block k; negative counts from the end). Default: the last 6 blocks."""
    if layers is None:
        return list(range(max(1, num_blocks + 1 - DEFAULT_NUM_LAYERS), num_blocks + 1))
    resolved = []
    for index in layers:
        if not -(num_blocks + 1) <= index <= num_blocks:
            raise ValueError(
                f"layer {index} is out of range for {what} with {num_blocks} blocks (0..{num_blocks} or negative)"
            )
        resolved.append(index % (num_blocks + 1))
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"layers {layers} name the same layer twice for {what}")
    return resolved


@dataclass
class ImageEncoderConfig:
    source: str = "torchvision"  # "torchvision" | "huggingface"
    name: str = "mobilenet_v2"  # torchvision builder name; ignored for huggingface (the folder's config says)
    path: str | None = None  # torchvision: state-dict file (None = random init); huggingface: local folder
    features: str = "cls"  # "cls" | "mean" | "concat" ([CLS, mean of patches], SAIL) | "layers"
    layers: list[int] | None = (
        None  # features="layers": hidden-state indices (negative from the end); default the last 6
    )
    layer_pooling: str = "cls"  # "cls" | "mean" per layer
    image_size: int = 224
    mean: tuple[float, float, float] | None = None  # None: ImageNet's, or the HF preprocessor_config.json's
    std: tuple[float, float, float] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # torchvision only: extra builder arguments

    def __post_init__(self) -> None:
        if self.source not in IMAGE_SOURCES:
            raise ValueError(f"image source must be one of {IMAGE_SOURCES}, got {self.source!r}")
        if self.features not in IMAGE_FEATURES:
            raise ValueError(f"image features must be one of {IMAGE_FEATURES}, got {self.features!r}")
        if self.layer_pooling not in LAYER_POOLINGS:
            raise ValueError(f"layer_pooling must be one of {LAYER_POOLINGS}, got {self.layer_pooling!r}")
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if self.path is not None:
            self.path = os.fspath(self.path)
        self.layers = _check_layers(self.layers, self.features, "layers")
        self.mean = _check_triple("mean", self.mean, positive=False)
        self.std = _check_triple("std", self.std, positive=True)
        self.model_kwargs = dict(self.model_kwargs or {})
        if self.source == "huggingface":
            if not self.path:
                raise ValueError("a huggingface image encoder needs path (a local model folder)")
            if self.model_kwargs:
                raise ValueError("model_kwargs is only used with source='torchvision'")
        else:
            self._check_torchvision_name()

    def _check_torchvision_name(self) -> None:
        if self.name == TORCHVISION_VIT_CLASS:
            return
        import torchvision

        known = self.name in torchvision.models.list_models(module=torchvision.models)
        if not known or not self.name.startswith(TORCHVISION_FAMILIES):
            raise ValueError(
                f"unsupported torchvision model {self.name!r}: use mobilenet_v2/v3, resnet*, wide_resnet*, "
                f"efficientnet_*, vit_* or {TORCHVISION_VIT_CLASS}"
            )


@dataclass
class TextEncoderConfig:
    path: str  # local Hugging Face / sentence-transformers folder
    pooling: str = "auto"  # "auto" (1_Pooling/config.json, else mean) | "mean" | "cls" | "max" | "last"
    normalize: bool | None = None  # None: as the folder's modules.json says (a Normalize module)
    max_length: int = 128
    features: str = "pooled"  # "pooled" | "layers" (pooled per hidden layer)
    layers: list[int] | None = None  # features="layers": hidden-state indices; default the last 6

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a text encoder needs path (a local model folder)")
        self.path = os.fspath(self.path)
        if self.pooling not in TEXT_POOLINGS:
            raise ValueError(f"text pooling must be one of {TEXT_POOLINGS}, got {self.pooling!r}")
        if self.normalize is not None and not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be true, false or null, got {self.normalize!r}")
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {self.max_length!r}")
        if self.features not in TEXT_FEATURES:
            raise ValueError(f"text features must be one of {TEXT_FEATURES}, got {self.features!r}")
        self.layers = _check_layers(self.layers, self.features, "layers")
