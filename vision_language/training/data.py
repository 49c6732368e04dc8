"""Batches of cached feature pairs for fairseq2's trainer: shard by rank, seeded shuffle, fixed-size
batches, gather from the caches in a map, prefetch. Nothing here touches an image or a caption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fairseq2.data.data_pipeline import read_sequence
from fairseq2.datasets import DataPipelineReader, SyncMode
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.gang import Gangs
from torch import Tensor

from vision_language.features import PairFeatures


@dataclass
class FeatureBatch(SupportsDeviceTransfer):
    image: Tensor  # (B, D_image) or (B, L, D_image)
    text: Tensor

    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        self.image = self.image.to(device, non_blocking=non_blocking)
        self.text = self.text.to(device, non_blocking=non_blocking)

    @property
    def batch_size(self) -> int:
        return int(self.image.shape[0])


def gather(pairs: PairFeatures, indices: list[int] | np.ndarray) -> tuple[Tensor, Tensor]:
    """(image, text) features of the pairs at ``indices``: plain tensors, since the prefetch buffer
    that holds them is saved in every checkpoint (which loads only tensors and plain values)."""
    idx = np.asarray(indices, dtype=np.int64)
    return pairs.images.get(pairs.image_rows[idx]), pairs.texts.get(pairs.text_rows[idx])


def create_reader(
    pairs: PairFeatures,
    gangs: Gangs,
    *,
    batch_size: int,
    train: bool,
    seed: int,
    num_prefetch: int = 2,
    limit: int | None = None,
) -> DataPipelineReader[FeatureBatch]:
    """Training: shuffled every epoch, full batches only (a contrastive loss needs its negatives);
    validation: the first ``limit`` pairs in order."""
    count = len(pairs) if limit is None else min(limit, len(pairs))
    source = read_sequence(list(range(count)))
    if gangs.dp.size > 1:
        source = source.shard(gangs.dp.rank, gangs.dp.size)
    if train:
        source = source.shuffle(0, seed=seed + gangs.dp.rank)
    batches = source.bucket(batch_size, drop_remainder=train).map(lambda idx: gather(pairs, idx))
    pipeline = batches.prefetch(max(1, num_prefetch)).map(lambda pair: FeatureBatch(*pair)).and_return()
    sync = SyncMode.UNTIL_FIRST if train else SyncMode.UNTIL_LAST
    return DataPipelineReader[FeatureBatch](pipeline, gangs, sync_mode=sync)


__all__ = ["FeatureBatch", "create_reader", "gather"]
