"""Data for training one front-end alone: clips of mouth crops (or their audio) from prepared manifests.

Three uses, one pipeline:

* ``classify`` (LRW word classification): each clip with the index of its word (the manifest's
  text; the classes are the sorted words of the training manifests), augmented as in AVSR
  training (random crop, flip, time mask) and centre-cropped for validation;
* ``views`` (MoCo pretraining): each clip as two independently augmented views
  (`avsr.training.lip_views`); labels are not read, so any manifest will do;
* ``audio`` (wav2vec 2.0 pretraining): each clip's 16 kHz audio, a random window of at most
  ``max_audio_seconds`` (the first window for validation); labels are not read.

The pipeline mirrors `avsr.training.data` (shard, seeded shuffle, length-sorted buckets, load in
a map, prefetch) with batches of a fixed number of clips; augmentation is seeded by (seed, rank,
epoch, position), so a resumed run sees the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from fairseq2.data.data_pipeline import DataPipeline, read_sequence
from fairseq2.datasets import DataPipelineReader, SyncMode
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.gang import Gangs
from torch import Tensor

from avsr.data.manifest import ManifestRow
from avsr.data.video import crop, normalize_pixels
from avsr.media import MediaError
from avsr.training import augment
from avsr.training.batching import derive_seed, labelled_subset, rng_for
from avsr.training.data import (
    AVDataReader,
    DatasetError,
    PipelineState,
    VideoAugConfig,
    dataset_root,
    move_tensors,
    read_manifest_rows,
    resolve_manifest,
)
from avsr.training.lip_views import LipViewConfig, lip_view, pad_views
from avsr.training.media import read_mouth_video_cached, read_wav

log = logging.getLogger("avsr.training")

ClipMode = Literal["classify", "views", "audio"]


@dataclass(kw_only=True)
class ClipDatasetConfig:
    """The ``dataset`` section of the LRW and MoCo recipes."""

    path: Path | None = None
    """Prepared data folder (avsr-prepare's OUT)."""
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    valid_split: str | None = "val"
    batch_size: int = 32
    """Clips per batch."""
    max_frames: int = 300
    """Longer clips are skipped."""
    max_audio_seconds: float = 5.0
    """``audio`` mode: longer clips are cut to a random window of this length."""
    normalize_audio: bool = False
    """``audio`` mode: scale each window to zero mean and unit variance (wav2vec 2.0 Large does)."""
    labelled_fraction: float = 1.0
    """Train on a seeded random share of the training clips (few-label experiments)."""
    max_valid_clips: int | None = None
    sort_buffer_size: int = 1000
    """Clips sorted by length together before batching (less padding)."""
    video: VideoAugConfig = field(default_factory=lambda: VideoAugConfig(time_mask_window=0))
    """Augmentation for classification (crop size, flip, time mask, pixel mean/std)."""
    num_prefetch: int = 4
    cache_video: bool = True
    """Keep decoded crops as uint8 .npy under OUTPUT_DIR/cache/video."""

    def __post_init__(self) -> None:
        if not 0.0 < self.labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction must be in (0, 1], got {self.labelled_fraction}")


@dataclass
class ClipBatch(SupportsDeviceTransfer):
    """inputs: video (B, T, H, W) normalised float, or audio (B, S) float, zero padded; lengths (B,)
    frames or samples; labels (B,) class indices (classification) or None; key_inputs/key_lengths:
    the second views (MoCo) or None."""

    inputs: Tensor
    lengths: Tensor
    labels: Tensor | None
    key_inputs: Tensor | None
    key_lengths: Tensor | None
    ids: list[str]

    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        move_tensors(self, ("inputs", "lengths", "labels", "key_inputs", "key_lengths"), device, non_blocking)

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    @property
    def num_elements(self) -> int:
        """Video frames or audio samples in the batch, padding excluded."""
        return int(self.lengths.sum())


def _word(row: ManifestRow) -> str:
    return row.text.strip().upper()


def word_classes(rows: Iterable[ManifestRow]) -> list[str]:
    """The sorted distinct transcripts (words) of ``rows``: class ``i`` is ``classes[i]``."""
    return sorted({_word(row) for row in rows} - {""})


def load_clips(
    tables: Sequence[tuple[Path, list[ManifestRow]]],
    classes: Sequence[str] | None,
    *,
    max_frames: int,
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(clips, skipped counts by reason) from (manifest, its rows) pairs. With ``classes``, each clip
    gets ``label`` (its word's index) and clips of other words are skipped."""
    index = {w: i for i, w in enumerate(classes)} if classes is not None else None
    clips: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for manifest, rows in tables:
        base = manifest.parent.resolve()
        for row in rows:
            if limit is not None and len(clips) >= limit:
                break
            reason = None
            if row.frames < 1 or row.frames > max_frames:
                reason = f"not 1-{max_frames} frames"
            elif index is not None and _word(row) not in index:
                reason = "word not among the training classes"
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            clip = {
                "id": row.id,
                "video": str(base / row.video),
                "audio": str(base / row.audio),
                "frames": int(row.frames),
            }
            if index is not None:
                clip["label"] = index[_word(row)]
            clips.append(clip)
    return clips, skipped


def _read(manifests: Sequence[Path]) -> list[tuple[Path, list[ManifestRow]]]:
    return [(m, read_manifest_rows(m)) for m in manifests]


class ClipLoader:
    """Loads and augments one batch of clips (see the module docstring for the three modes)."""

    def __init__(
        self,
        config: ClipDatasetConfig,
        views: LipViewConfig,
        mode: ClipMode,
        *,
        train: bool,
        seed: int,
        rank: int,
        state: PipelineState,
        cache_dir: Path | None,
        min_size: int = 1,
    ) -> None:
        self.config, self.views, self.mode = config, views, mode
        self.train, self.seed, self.rank, self.state, self.cache_dir = train, seed, rank, state, cache_dir
        self.min_size = min_size
        """Fewer clips than this (after skipping unreadable ones) and the batch is skipped."""

    def _classify_item(self, video: np.ndarray, rng: np.random.Generator) -> Tensor:
        vcfg = self.config.video
        video = crop(video, vcfg.crop_size, rng if (self.train and vcfg.random_crop) else None)
        if self.train:
            if vcfg.hflip_prob > 0 and rng.random() < vcfg.hflip_prob:
                video = augment.hflip(video)
            video = augment.time_mask(video, vcfg.time_mask_window, vcfg.time_mask_stride, rng)
        return torch.from_numpy(normalize_pixels(np.ascontiguousarray(video), vcfg.mean, vcfg.std))

    def _audio_item(self, audio: np.ndarray, rng: np.random.Generator) -> Tensor:
        longest = max(1, int(self.config.max_audio_seconds * 16000))
        if audio.shape[0] > longest:
            start = int(rng.integers(0, audio.shape[0] - longest + 1)) if self.train else 0
            audio = audio[start : start + longest]
        if self.config.normalize_audio:
            audio = (audio - audio.mean()) / (audio.std() + 1e-5)
        return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """The fields of a `ClipBatch` (plain values: the prefetch buffer that holds them is saved in
        every checkpoint, which loads only tensors and plain values), or None if no clip loaded."""
        # validation views are drawn the same way at every evaluation (epoch 0)
        epoch = self.state.epoch if self.train else 0
        rng = rng_for(self.seed, self.rank, epoch, batch["index"], self.mode)
        queries, keys, labels, ids = [], [], [], []
        for clip in batch["clips"]:
            try:
                if self.mode == "audio":
                    queries.append(self._audio_item(read_wav(clip["audio"]), rng))
                    ids.append(clip["id"])
                    continue
                video = read_mouth_video_cached(clip["video"], self.cache_dir)
            except (MediaError, ValueError) as exc:
                log.warning("skipping %s: %s", clip["id"], exc)
                continue
            if self.mode == "views":
                queries.append(lip_view(video, rng, self.views))
                keys.append(lip_view(video, rng, self.views))
            else:
                queries.append(self._classify_item(video, rng))
                labels.append(clip["label"])
            ids.append(clip["id"])
        if len(ids) < max(1, self.min_size):
            if ids:
                log.warning(
                    "skipping a batch left with %d clip(s) (training needs at least %d per batch)",
                    len(ids),
                    self.min_size,
                )
            return None
        inputs, lengths = pad_views(queries)
        key_inputs = key_lengths = None
        if keys:
            key_inputs, key_lengths = pad_views(keys)
        label_tensor = torch.tensor(labels, dtype=torch.int64) if labels else None
        return {
            "inputs": inputs,
            "lengths": lengths,
            "labels": label_tensor,
            "key_inputs": key_inputs,
            "key_lengths": key_lengths,
            "ids": ids,
        }


def group_clips(count: int, batch_size: int, min_size: int = 1) -> list[range]:
    """Positions ``0..count-1`` in batches of ``batch_size``; a last batch of fewer than ``min_size``
    joins the one before it (dropped when there is none), for models that normalise over the batch."""
    groups = [range(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]
    if groups and len(groups[-1]) < min_size:
        last = groups.pop()
        if groups:
            groups[-1] = range(groups[-1].start, last.stop)
    return groups


def _batches_of(
    bucket: list[dict[str, Any]], batch_size: int, rng: np.random.Generator, min_size: int = 1
) -> list[dict[str, Any]]:
    ordered = sorted(bucket, key=lambda entry: entry["clip"]["frames"])
    groups = [ordered[g.start : g.stop] for g in group_clips(len(ordered), batch_size, min_size)]
    return [
        {"clips": [e["clip"] for e in groups[j]], "index": min(e["n"] for e in groups[j])}
        for j in rng.permutation(len(groups))
    ]


class ClipDataset:
    """The clips of one run, with fairseq2 readers for training and validation."""

    def __init__(
        self,
        config: ClipDatasetConfig,
        mode: ClipMode,
        views: LipViewConfig | None = None,
        *,
        seed: int = 2,
        cache_dir: Path | None = None,
    ) -> None:
        self.config, self.mode, self.views = config, mode, views or LipViewConfig()
        self.seed, self.cache_dir = seed, cache_dir
        self._told_merge = False
        root = dataset_root(config.path, config.train_splits)
        train_manifests = [resolve_manifest(root, s) for s in config.train_splits]
        tables = _read(train_manifests)  # read once: the classes and the clips come from the same rows
        self.classes = word_classes(row for _, rows in tables for row in rows) if mode == "classify" else None
        if self.classes is not None and len(self.classes) < 2:
            raise DatasetError(f"{', '.join(map(str, train_manifests))}: fewer than 2 distinct words to classify")
        clips, self.skipped = load_clips(tables, self.classes, max_frames=config.max_frames)
        clips = labelled_subset(clips, config.labelled_fraction, seed)
        if not clips:
            raise DatasetError(
                f"no usable training clips in {', '.join(map(str, train_manifests))} (skipped: {self.skipped})"
            )
        self.train = clips
        self.valid: list[dict[str, Any]] | None = None
        if config.valid_split:
            self.valid, _ = load_clips(
                _read([resolve_manifest(root, config.valid_split)]),
                self.classes,
                max_frames=config.max_frames,
                limit=config.max_valid_clips,
            )

    def describe(self) -> str:
        classes = f", {len(self.classes)} words" if self.classes is not None else ""
        skipped = ", ".join(f"{v} {k}" for k, v in self.skipped.items())
        return (
            f"train: {len(self.train)} clips{classes}"
            + (f" (skipped {skipped})" if skipped else "")
            + f"; valid: {len(self.valid) if self.valid is not None else 'none'}"
        )

    def _loader(self, train: bool, rank: int, state: PipelineState, min_size: int = 1) -> ClipLoader:
        cache = self.cache_dir / "video" if (self.config.cache_video and self.cache_dir is not None) else None
        return ClipLoader(
            self.config,
            self.views,
            self.mode,
            train=train,
            seed=self.seed,
            rank=rank,
            state=state,
            cache_dir=cache,
            min_size=min_size,
        )

    def _batches(self, bucket: list[dict[str, Any]], rng: np.random.Generator, min_size: int) -> DataPipeline:
        batch_size = self.config.batch_size
        left = len(bucket) % batch_size
        if not self._told_merge and 0 < left < min_size:
            self._told_merge = True
            log.info(
                "%d clip(s) left at the end of a sort buffer of %d are %s: the model normalises over the batch and needs "
                "%d clips per batch (said once)",
                left,
                len(bucket),
                "merged into the batch before it" if len(bucket) > left else "dropped",
                min_size,
            )
        return read_sequence(_batches_of(bucket, batch_size, rng, min_size)).and_return()

    def _pipeline(
        self, clips: list[dict[str, Any]], loader: ClipLoader, *, train: bool, rank: int, world_size: int
    ) -> DataPipeline:
        state = loader.state
        source = read_sequence(list(clips))
        if world_size > 1:
            source = source.shard(rank, world_size)
        if train:
            source = source.shuffle(0, seed=derive_seed(self.seed, rank, "shuffle") % (2**31))
        numbered = DataPipeline.zip([source.and_return(), DataPipeline.count(0).and_return()], names=["clip", "n"])
        buffer = self.config.sort_buffer_size if train else max(1, len(clips))
        batches = numbered.bucket(buffer).yield_from(
            lambda bucket: self._batches(
                bucket,
                rng_for(self.seed, rank, state.epoch if train else 0, "order", min(e["n"] for e in bucket)),
                loader.min_size,
            )
        )
        loaded = batches.map(loader).filter(lambda b: b is not None).prefetch(max(1, self.config.num_prefetch))
        return loaded.map(lambda fields: ClipBatch(**fields)).and_return()

    def create_train_reader(self, gangs: Gangs, *, num_accumulate: int = 1, min_batch_size: int = 1) -> AVDataReader:
        """``min_batch_size``: clips a batch must hold (2 for a model that normalises over the
        batch): a smaller last batch of a sort buffer joins the one before it."""
        state = PipelineState()
        loader = self._loader(True, gangs.dp.rank, state, min_batch_size)
        pipeline = self._pipeline(self.train, loader, train=True, rank=gangs.dp.rank, world_size=gangs.dp.size)
        return AVDataReader(
            DataPipelineReader[ClipBatch](
                pipeline, gangs, num_accumulate=num_accumulate, sync_mode=SyncMode.UNTIL_FIRST
            ),
            state,
        )

    def create_valid_reader(self, gangs: Gangs) -> AVDataReader:
        if not self.valid:
            raise DatasetError("no validation clips (dataset.valid_split)")
        state = PipelineState()
        loader = self._loader(False, gangs.dp.rank, state)
        pipeline = self._pipeline(self.valid, loader, train=False, rank=gangs.dp.rank, world_size=gangs.dp.size)
        return AVDataReader(DataPipelineReader[ClipBatch](pipeline, gangs, sync_mode=SyncMode.UNTIL_LAST), state)


__all__ = ["ClipBatch", "ClipDataset", "ClipDatasetConfig", "ClipLoader", "load_clips", "word_classes"]
