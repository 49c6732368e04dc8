"""Frozen image encoders: torchvision CNNs/ViTs from a local state dict, Hugging Face ViT/DINOv2.

Every encoder maps a batch of preprocessed images to pooled features, (B, D), or to features
pooled per hidden layer, (B, L, D), which is what the projectors of SAIL ([CLS, mean of patches]),
Freeze-Align (CLS and mean of patches of the final layer) and ManagerTower (top 6 layers) consume.
The encoders never train: parameters are frozen and the module stays in eval mode.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from avsr.nn.state import state_problems
from vision_language.encoders.config import (
    DEFAULT_NUM_LAYERS,
    TORCHVISION_VIT_CLASS,
    ImageEncoderConfig,
    resolve_layers,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PIL_RESAMPLE = {0: InterpolationMode.NEAREST, 2: InterpolationMode.BILINEAR, 3: InterpolationMode.BICUBIC}
# Classifier heads are dropped, so their keys in a state dict are neither required nor checked.
_HEAD_PREFIXES = ("fc.", "classifier.", "heads.")
_PROBE_SIZE = 64  # a small image is enough to learn the width of every CNN block


class ImageEncoder(nn.Module):
    """Shared preprocessing, freezing and description; subclasses implement ``forward``."""

    output_dim: int
    num_layers: int

    def __init__(
        self,
        config: ImageEncoderConfig,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: InterpolationMode,
    ) -> None:
        super().__init__()
        self.config = config
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.layer_indices: list[int] | None = None

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ImageEncoder:
        """Always eval: a frozen encoder must not update BatchNorm statistics or use dropout."""
        return super().train(False)

    def preprocess(self, images: Sequence[Image.Image | np.ndarray]) -> Tensor:
        """PIL images (or HWC uint8 arrays) -> (B, 3, S, S) floats: shorter side resized to S,
        centre-cropped, RGB, normalised."""
        size = self.config.image_size
        tensors = []
        for image in images:
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            image = image.convert("RGB")
            image = TF.resize(image, size, interpolation=self.interpolation, antialias=True)
            image = TF.center_crop(image, [size, size])
            tensors.append(TF.pil_to_tensor(image))
        if not tensors:
            raise ValueError("preprocess needs at least one image")
        batch = torch.stack(tensors).float().div_(255.0)
        return (batch - self._mean.cpu()) / self._std.cpu()

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def describe(self) -> dict[str, Any]:
        """What produced the features, for a cache index or a model config."""
        return {
            "kind": "image",
            "source": self.config.source,
            "name": self._name(),
            "path": self.config.path,
            "features": self.config.features,
            "layers": self.layer_indices,
            "layer_pooling": self.config.layer_pooling if self.config.features == "layers" else None,
            "output_dim": self.output_dim,
            "num_layers": self.num_layers,
            "image_size": self.config.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def _name(self) -> str:
        return self.config.name


def _pool_tokens(tokens: Tensor, how: str, prefix: int) -> Tensor:
    """(B, N, D) -> (B, D): the class token (position 0) or the mean of the patch tokens, which
    start after the class token and any register tokens."""
    if how == "cls":
        return tokens[:, 0]
    return tokens[:, prefix:].mean(dim=1)


def _final_features(last: Tensor, features: str, prefix: int) -> Tensor:
    if features == "concat":
        return torch.cat([_pool_tokens(last, "cls", prefix), _pool_tokens(last, "mean", prefix)], dim=-1)
    return _pool_tokens(last, features, prefix)


# --------------------------------------------------------------------------------------------
# torchvision


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    """Weights from safetensors or a weights-only PyTorch checkpoint (wrappers unwrapped)."""
    from avsr.models.weights import WeightsError, read_state_dict

    try:
        return read_state_dict(path)
    except WeightsError as exc:
        raise ValueError(f"image encoder weights: {exc}") from None


def _load_backbone_strictly(model: nn.Module, state: dict[str, Tensor], path: Path, name: str) -> None:
    """Every backbone key must be present with its shape and nothing else; head keys are ignored."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(_HEAD_PREFIXES)}
    given = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    problems = state_problems(expected, given)
    if problems:
        raise ValueError(f"{path}: state dict does not fit torchvision {name}: " + "; ".join(problems))
    model.load_state_dict(given, strict=False)


def _build_torchvision(config: ImageEncoderConfig) -> nn.Module:
    kwargs = dict(config.model_kwargs)
    if config.name == TORCHVISION_VIT_CLASS:
        kwargs.setdefault("image_size", config.image_size)
        return torchvision.models.VisionTransformer(**kwargs)
    if config.name.startswith("vit_"):
        kwargs.setdefault("image_size", config.image_size)
    try:
        return torchvision.models.get_model(config.name, weights=None, **kwargs)
    except TypeError as error:
        raise ValueError(f"torchvision {config.name} rejects model_kwargs {kwargs}: {error}") from None


def _maybe_resize_positions(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A ViT checkpoint made at another resolution: interpolate its position embeddings."""
    key = "encoder.pos_embedding"
    if not isinstance(model, torchvision.models.VisionTransformer) or key not in state:
        return state
    if state[key].shape == model.encoder.pos_embedding.shape:
        return state
    from collections import OrderedDict

    from torchvision.models.vision_transformer import interpolate_embeddings

    resized = interpolate_embeddings(model.image_size, model.patch_size, OrderedDict(state))
    return dict(resized)


class TorchvisionCNNEncoder(ImageEncoder):
    """MobileNet, ResNet and EfficientNet: global-average-pooled final feature map, no classifier
    (1280-d for mobilenet_v2, 2048 for resnet50).

    Hidden states, for features="layers": index 0 is the stem's output (resnet: conv1..maxpool;
    mobilenet/efficientnet: ``features[0]``) and index k the output of block k, where the blocks
    are the residual blocks of ``layer1..layer4`` (resnet) or the remaining children of
    ``features`` (mobilenet: inverted-residual blocks then the final 1x1 conv; efficientnet:
    stages). Each is average-pooled over space ("cls" and "mean" both mean this for a CNN). Nothing
    is projected, so the chosen blocks must share one width; the default is the trailing blocks of
    the final width (at most 6): mobilenet_v2 -> the final conv only, resnet50 -> layer4's 3 blocks.
    """

    def __init__(self, config: ImageEncoderConfig, model: nn.Module) -> None:
        super().__init__(config, config.mean or IMAGENET_MEAN, config.std or IMAGENET_STD, InterpolationMode.BILINEAR)
        if config.features == "concat":
            raise ValueError(
                f"features='concat' needs a class token; torchvision {config.name} is a CNN (use cls, mean or layers)"
            )
        self.is_resnet = hasattr(model, "layer4")
        if self.is_resnet:
            model.fc = nn.Identity()
        else:
            model.classifier = nn.Identity()
        self.model = model
        self._freeze()
        widths = self._probe_widths()
        num_blocks = len(widths) - 1
        if config.features == "layers":
            if config.layers is None:
                trailing = 0
                while trailing < min(DEFAULT_NUM_LAYERS, num_blocks) and widths[num_blocks - trailing] == widths[-1]:
                    trailing += 1
                self.layer_indices = list(range(num_blocks + 1 - trailing, num_blocks + 1))
            else:
                self.layer_indices = resolve_layers(config.layers, num_blocks, f"torchvision {config.name}")
            chosen = {i: widths[i] for i in self.layer_indices}
            if len(set(chosen.values())) > 1:
                raise ValueError(
                    f"layers of torchvision {config.name} must share a width (nothing is projected), got widths {chosen}"
                )
            self.output_dim = widths[self.layer_indices[0]]
            self.num_layers = len(self.layer_indices)
        else:
            self.output_dim = widths[-1]
            self.num_layers = 1

    def _stem_and_blocks(self) -> tuple[list[nn.Module], list[nn.Module]]:
        m = self.model
        if self.is_resnet:
            blocks = [block for stage in (m.layer1, m.layer2, m.layer3, m.layer4) for block in stage]
            return [m.conv1, m.bn1, m.relu, m.maxpool], blocks
        children = list(m.features)
        return children[:1], children[1:]

    def _hidden_states(self, x: Tensor, keep: set[int] | None) -> tuple[Tensor, dict[int, Tensor]]:
        """Runs the network; returns the final map and the maps of the hidden states in ``keep``
        (all of them when ``keep`` is None)."""
        stem, blocks = self._stem_and_blocks()
        for module in stem:
            x = module(x)
        kept = {0: x} if keep is None or 0 in keep else {}
        for index, block in enumerate(blocks, start=1):
            x = block(x)
            if keep is None or index in keep:
                kept[index] = x
        return x, kept

    def _probe_widths(self) -> list[int]:
        probe = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE, device=self._device())
        with torch.no_grad():
            _, kept = self._hidden_states(probe, None)
        return [kept[i].shape[1] for i in range(len(kept))]

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = pixel_values.to(self._device())
        if self.config.features != "layers":
            final, _ = self._hidden_states(x, set())
            return F.adaptive_avg_pool2d(final, 1).flatten(1)
        assert self.layer_indices is not None
        _, kept = self._hidden_states(x, set(self.layer_indices))
        return torch.stack([F.adaptive_avg_pool2d(kept[i], 1).flatten(1) for i in self.layer_indices], dim=1)


class TorchvisionViTEncoder(ImageEncoder):
    """torchvision ViT: "cls" is the final class token after the encoder's final LayerNorm, "mean"
    the mean of the normed patch tokens, "concat" both; "layers" pools the raw output of each
    block (index 0 = patch + position embeddings, k = block k; no final LayerNorm)."""

    def __init__(self, config: ImageEncoderConfig, model: torchvision.models.VisionTransformer) -> None:
        super().__init__(config, config.mean or IMAGENET_MEAN, config.std or IMAGENET_STD, InterpolationMode.BILINEAR)
        if model.image_size != config.image_size:
            raise ValueError(
                f"the ViT was built for {model.image_size} px images but image_size is {config.image_size}"
            )
        model.heads = nn.Identity()
        self.model = model
        self._freeze()
        num_blocks = len(model.encoder.layers)
        if config.features == "layers":
            self.layer_indices = resolve_layers(config.layers, num_blocks, f"torchvision {config.name}")
            self.num_layers = len(self.layer_indices)
        else:
            self.num_layers = 1
        self.output_dim = model.hidden_dim * (2 if config.features == "concat" else 1)

    def forward(self, pixel_values: Tensor) -> Tensor:
        m = self.model
        x = m._process_input(pixel_values.to(self._device()))
        x = torch.cat([m.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = m.encoder.dropout(x + m.encoder.pos_embedding)
        hidden = [x]
        for block in m.encoder.layers:
            x = block(x)
            hidden.append(x)
        if self.config.features != "layers":
            return _final_features(m.encoder.ln(x), self.config.features, prefix=1)
        assert self.layer_indices is not None
        pooled = [_pool_tokens(hidden[i], self.config.layer_pooling, prefix=1) for i in self.layer_indices]
        return torch.stack(pooled, dim=1)


def build_torchvision_encoder(config: ImageEncoderConfig) -> ImageEncoder:
    model = _build_torchvision(config)
    if config.path is None:
        warnings.warn(f"torchvision {config.name}: no path given, the weights are random (tests only)", stacklevel=3)
    else:
        path = Path(config.path)
        state = _maybe_resize_positions(model, _load_state_dict(path))
        _load_backbone_strictly(model, state, path, config.name)
    if isinstance(model, torchvision.models.VisionTransformer):
        return TorchvisionViTEncoder(config, model)
    return TorchvisionCNNEncoder(config, model)


# --------------------------------------------------------------------------------------------
# Hugging Face


def _read_preprocessor(folder: Path) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    with path.open() as handle:
        return json.load(handle)


class HFImageEncoder(ImageEncoder):
    """A vision transformer from a local Hugging Face folder (ViT, DINOv2, DINOv2 with registers).

    "cls"/"mean"/"concat" read ``last_hidden_state`` (after the model's final norm); the mean runs
    over patch tokens only, skipping the class token and any register tokens. "layers" pools
    ``hidden_states`` (index 0 = embeddings, k = block k; before the final norm)."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        folder = Path(config.path or "")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model folder (config.json) at {folder}")
        preprocessor = _read_preprocessor(folder)
        mean = config.mean or preprocessor.get("image_mean") or IMAGENET_MEAN
        std = config.std or preprocessor.get("image_std") or IMAGENET_STD
        interpolation = _PIL_RESAMPLE.get(preprocessor.get("resample", 3), InterpolationMode.BICUBIC)
        super().__init__(config, mean, std, interpolation)
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        hf_config = model.config
        if (
            not hasattr(hf_config, "hidden_size")
            or not hasattr(hf_config, "num_hidden_layers")
            or hasattr(hf_config, "vision_config")
        ):
            raise ValueError(
                f"{folder}: expected a vision-only transformer (ViT, DINOv2, ...), got {hf_config.model_type}"
            )
        self.model = model
        self._freeze()
        self.prefix = 1 + int(getattr(hf_config, "num_register_tokens", 0) or 0)
        self.forward_kwargs: dict[str, Any] = {}
        trained_size = getattr(hf_config, "image_size", config.image_size)
        if (
            trained_size != config.image_size
            and "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
        ):
            self.forward_kwargs["interpolate_pos_encoding"] = True
        if config.features == "layers":
            self.layer_indices = resolve_layers(config.layers, hf_config.num_hidden_layers, f"{folder}")
            self.num_layers = len(self.layer_indices)
        else:
            self.num_layers = 1
        self.output_dim = hf_config.hidden_size * (2 if config.features == "concat" else 1)

    def _name(self) -> str:
        return str(self.model.config.model_type)

    def forward(self, pixel_values: Tensor) -> Tensor:
        layers = self.config.features == "layers"
        output = self.model(
            pixel_values=pixel_values.to(self._device()),
            output_hidden_states=layers,
            return_dict=True,
            **self.forward_kwargs,
        )
        if not layers:
            return _final_features(output.last_hidden_state, self.config.features, self.prefix)
        assert self.layer_indices is not None
        pooled = [
            _pool_tokens(output.hidden_states[i], self.config.layer_pooling, self.prefix) for i in self.layer_indices
        ]
        return torch.stack(pooled, dim=1)


def build_image_encoder(config: ImageEncoderConfig) -> ImageEncoder:
    """A frozen, eval-mode image encoder as the config says (local files only)."""
    if config.source == "huggingface":
        return HFImageEncoder(config)
    return build_torchvision_encoder(config)
