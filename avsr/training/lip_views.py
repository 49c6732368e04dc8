"""MoCo v2's augmentations adapted to lip video: two random views of one clip of mouth crops.

Per view, the same for every frame of it: a random window of the frames (temporal jitter), a
random resized crop (area and aspect ratio), a horizontal flip, brightness and contrast changes,
and a Gaussian blur. Colour jitter and greyscale, MoCo's other image augmentations, have no
counterpart for grey crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avsr.data.video import CROP_SIZE, PIXEL_MEAN, PIXEL_STD


@dataclass(frozen=True)
class LipViewConfig:
    crop_size: int = CROP_SIZE
    """Side of each view in pixels."""
    min_area: float = 0.4
    """Smallest share of the frame a crop covers (MoCo on images: 0.2; mouths need more of the lips)."""
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    min_frames: float = 0.8
    """Each view keeps a random window of at least this share of the frames."""
    segment_frames: int | None = None
    """Sentences: both views come from one random segment of at most this many frames (29: LRW's
    word length), so that they show the same lip movements, not two parts of one sentence."""
    hflip_prob: float = 0.5
    brightness: float = 0.2
    """Added to every pixel: uniform in [-brightness, brightness] (pixels in [0, 1])."""
    contrast: float = 0.2
    """Pixels scaled about the view's mean by a factor uniform in [1 - contrast, 1 + contrast]."""
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    mean: float = PIXEL_MEAN
    std: float = PIXEL_STD


def _window(frames: int, rng: np.random.Generator, min_share: float) -> tuple[int, int]:
    length = max(1, int(round(frames * rng.uniform(min_share, 1.0))))
    start = int(rng.integers(0, frames - length + 1))
    return start, start + length


def _crop_box(height: int, width: int, rng: np.random.Generator, config: LipViewConfig) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering a random share of the area."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(config.min_area, 1.0)
        ratio = math.exp(rng.uniform(math.log(config.aspect[0]), math.log(config.aspect[1])))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def _blur(video: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=video.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    frames = video[:, None]  # (T, 1, H, W)
    frames = F.conv2d(F.pad(frames, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    frames = F.conv2d(F.pad(frames, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return frames[:, 0]


def lip_view(video: np.ndarray, rng: np.random.Generator, config: LipViewConfig) -> Tensor:
    """One augmented, normalised view (T', crop, crop) float32 of ``video`` (T, H, W) uint8."""
    if video.ndim != 3:
        raise ValueError(f"mouth video must be (T, H, W) grey frames, got shape {video.shape}")
    start, end = _window(video.shape[0], rng, config.min_frames)
    top, left, h, w = _crop_box(video.shape[1], video.shape[2], rng, config)
    clip = torch.from_numpy(np.ascontiguousarray(video[start:end, top : top + h, left : left + w])).float() / 255.0
    clip = F.interpolate(
        clip[:, None], size=(config.crop_size, config.crop_size), mode="bilinear", align_corners=False
    )[:, 0]
    if rng.random() < config.hflip_prob:
        clip = clip.flip(-1)
    factor = rng.uniform(1.0 - config.contrast, 1.0 + config.contrast)
    clip = (clip - clip.mean()) * factor + clip.mean() + rng.uniform(-config.brightness, config.brightness)
    if rng.random() < config.blur_prob:
        clip = _blur(clip, float(rng.uniform(*config.blur_sigma)))
    clip = clip.clamp(0.0, 1.0)
    return (clip - config.mean) / config.std


def two_views(video: np.ndarray, rng: np.random.Generator, config: LipViewConfig) -> tuple[Tensor, Tensor]:
    """The query and key views MoCo compares: two independent draws of :func:`lip_view` (of one
    shared segment when ``segment_frames`` is set)."""
    if config.segment_frames is not None and video.shape[0] > config.segment_frames:
        start = int(rng.integers(0, video.shape[0] - config.segment_frames + 1))
        video = video[start : start + config.segment_frames]
    return lip_view(video, rng, config), lip_view(video, rng, config)


def pad_views(views: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack views of different lengths: (B, T_max, H, W) zero-padded, and their lengths (B,)."""
    lengths = torch.tensor([v.shape[0] for v in views], dtype=torch.int64)
    batch = views[0].new_zeros(len(views), int(lengths.max()), *views[0].shape[1:])
    for i, v in enumerate(views):
        batch[i, : v.shape[0]] = v
    return batch, lengths


__all__ = ["LipViewConfig", "lip_view", "pad_views", "two_views"]
