"""What a model's video input is: grey mouth crops cut to the model's size and normalised.

Prepared crops are 96 px (`avsr.face.align`); a model sees an 88 px crop of them (random while
training, the centre otherwise) with pixels mapped to ``(x / 255 - mean) / std``. Training, the
recogniser and every model folder take these defaults, crop and normalisation from here, so the
pixels a model is evaluated on are computed as the pixels it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CROP_SIZE = 88
#: Pixel mean and std of mouth crops (LRS3's, auto_avsr's values; the seed paper's LRS2: 0.4161 / 0.1688).
PIXEL_MEAN = 0.421
PIXEL_STD = 0.165


@dataclass(frozen=True)
class Preprocessing:
    """What a model's video inputs must look like (recorded in model.yaml's ``extra``)."""

    crop_size: int = CROP_SIZE
    """Side of the centre crop taken from the prepared mouth crops."""
    video_mean: float = PIXEL_MEAN
    video_std: float = PIXEL_STD

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Preprocessing:
        return cls(
            crop_size=int(data.get("crop_size", cls.crop_size)),
            video_mean=float(data.get("video_mean", cls.video_mean)),
            video_std=float(data.get("video_std", cls.video_std)),
        )

    @classmethod
    def from_train_config(cls, config: Mapping[str, Any] | None) -> Preprocessing:
        """From an avsr-train config's ``dataset.video`` (crop_size, mean, std)."""
        video = ((config or {}).get("dataset") or {}).get("video") or {}
        return cls.from_mapping(
            {
                k2: video[k1]
                for k1, k2 in (("crop_size", "crop_size"), ("mean", "video_mean"), ("std", "video_std"))
                if k1 in video
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {"crop_size": self.crop_size, "video_mean": self.video_mean, "video_std": self.video_std}


def crop(video: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A ``size`` x ``size`` crop of every frame of ``video`` (T, H, W): the same random place for
    the whole clip when ``rng`` is given, else the centre. A frame smaller than ``size`` is an error."""
    height, width = video.shape[1:3]
    if height < size or width < size:
        raise ValueError(f"frames of {height}x{width} are smaller than the crop size {size}")
    if rng is None:
        top, left = (height - size) // 2, (width - size) // 2
    else:
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return video[:, top : top + size, left : left + size]


def normalize_pixels(video: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (…) -> float32 ``(x / 255 - mean) / std``, as one multiply-add."""
    scale = np.float32(1.0 / (255.0 * std))
    return video.astype(np.float32) * scale - np.float32(mean / std)


def model_view(video: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """(T, H, W) uint8 prepared crops -> (T, S, S) float32: what the model sees at evaluation."""
    return normalize_pixels(crop(video, preprocessing.crop_size), preprocessing.video_mean, preprocessing.video_std)


__all__ = ["CROP_SIZE", "PIXEL_MEAN", "PIXEL_STD", "Preprocessing", "crop", "model_view", "normalize_pixels"]
