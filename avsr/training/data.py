"""Training data: prepared manifests -> length-bucketed, augmented `AVBatch`es via fairseq2 pipelines.

The pipeline (one per rank; each rank reads its own shard of the manifest rows):

    rows --shard(rank)--> shuffle(window, seed) --> number (position in this epoch)
         --> curriculum filter (first K steps: only utterances <= N frames)
         --> bucket(sort_buffer) --> sort by length, pack under max_frames_per_batch / max_batch_size,
             shuffle the batch order --> load + augment (PyAV / wav, Python map; then, if configured,
             corrupt some clips' video: blur, occlusion, frozen frames, another clip's face, noise)
         --> prefetch --> normalise to float tensors --> AVBatch

Only small metadata (ids, paths, lengths, token ids) sits in the shuffle and sort buffers, and the
prefetched batches hold uint8 video, so the pipeline state that fairseq2 saves in every checkpoint
(and restores on resume, exactly) stays small. Random augmentation draws from a generator seeded by
(seed, rank, epoch, position), so a resumed run sees the same batches as one that never stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from fairseq2.data.data_pipeline import DataPipeline, read_sequence
from fairseq2.datasets import DataPipelineReader, DataReader, SyncMode
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.gang import Gangs
from torch import Tensor

from avsr.data.manifest import ManifestError, ManifestRow, read_manifest
from avsr.data.tokenizers import Tokenizer
from avsr.data.video import CROP_SIZE, PIXEL_MEAN, PIXEL_STD, crop, normalize_pixels
from avsr.media import MediaError
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME
from avsr.training import augment
from avsr.training.batching import derive_seed, labelled_subset, make_batches, rng_for
from avsr.training.media import read_mouth_video_cached, read_wav, save_cache

log = logging.getLogger("avsr.training")

MODALITIES = ("audio", "video")


class DatasetError(ValueError):
    """The dataset section points at something unusable; the message is one line."""


# ---------------------------------------------------------------------------------------- config


@dataclass(kw_only=True)
class NoiseConfig:
    """Additive noise on the training audio (seed paper: babble, p=0.25, 5 dB; auto_avsr: babble at
    every sample, SNR from {-5, 0, 5, 10, 15, 20} dB or clean)."""

    prob: float = 0.0
    """Probability that an utterance gets noise."""
    kinds: list[Literal["babble", "white"]] = field(default_factory=lambda: ["babble"])
    """Noise kinds, one drawn uniformly per noisy utterance."""
    snr_db: tuple[float, float] = (5.0, 5.0)
    """SNR range in dB, drawn uniformly (equal bounds: a fixed SNR)."""
    snr_choices: list[float] | None = None
    """If set, the SNR is drawn from these values instead of the range."""
    babble_utterances: int = 20
    """How many training utterances talk at once in the babble track (seed paper: 20)."""
    babble_seconds: float = 300.0
    """Length of the cyclic babble track built from the training set at start-up."""
    valid_snr_db: float | None = None
    """If set, validation audio gets babble (or the first kind) at this SNR (deterministic)."""


@dataclass(kw_only=True)
class VideoCorruptionConfig:
    """Training on degraded video (off unless ``prob > 0``): per clip, with probability ``prob``,
    its video gets one of ``kinds`` (`avsr.training.augment.VIDEO_CORRUPTIONS`, drawn uniformly);
    the transcript stays the true one, so the model learns to rely on the audio when the lips
    cannot be read. The batch marks the corrupted clips (``AVBatch.video_corrupted``) and modality
    dropout never takes their audio away: lips that cannot be read, without the sound, would only
    teach the lip reader wrong words. ``wrong_face`` takes the video of another clip of the batch (or of a random
    training utterance when the batch has one clip). Drawn from its own seeded generator: with
    ``prob: 0`` every other augmentation is exactly as without this section."""

    prob: float = 0.0
    """Probability that a training clip's video is corrupted (0: off)."""
    kinds: list[Literal["blur", "occlusion", "frozen", "wrong_face", "noise"]] = field(
        default_factory=lambda: ["blur", "occlusion", "frozen", "wrong_face", "noise"]
    )
    """The corruptions, one drawn uniformly from this list per corrupted clip (a kind listed twice
    is drawn twice as often)."""
    start_step: int = 0
    """No corruption before this step (e.g. while a modality schedule trains on audio only)."""
    ramp_steps: int = 0
    """The probability grows linearly from 0 at ``start_step`` to ``prob`` ``ramp_steps`` later.
    Steps are counted as the data reader hands out batches (as the curriculum's), so the ramp is
    exact to within ``num_prefetch`` batches."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"video corruption prob must be in [0, 1], got {self.prob}")
        if self.prob > 0 and not self.kinds:
            raise ValueError("video corruption kinds is empty")
        if self.start_step < 0 or self.ramp_steps < 0:
            raise ValueError("video corruption start_step and ramp_steps must be >= 0")

    def prob_at(self, step: int) -> float:
        """The corruption probability at training step ``step``."""
        if self.prob <= 0 or step < self.start_step:
            return 0.0
        if self.ramp_steps <= 0:
            return self.prob
        return self.prob * min(1.0, (step - self.start_step) / self.ramp_steps)


@dataclass(kw_only=True)
class VideoAugConfig:
    crop_size: int = CROP_SIZE
    """Side of the crop fed to the model (random in training, centre at evaluation)."""
    random_crop: bool = True
    hflip_prob: float = 0.5
    time_mask_window: int = 10
    """auto_avsr's adaptive time mask: up to window-1 frames zeroed ..."""
    time_mask_stride: int = 25
    """... per this many frames (0 or window <= 1: off)."""
    mean: float = PIXEL_MEAN
    std: float = PIXEL_STD
    corruption: VideoCorruptionConfig = field(default_factory=VideoCorruptionConfig)
    """Training on degraded video (blur, occlusion, frozen frames, the wrong face, noise); off by default."""


@dataclass(kw_only=True)
class AudioAugConfig:
    time_mask_window: int = 0
    """Adaptive time mask on the waveform in samples (auto_avsr: 6400 per 16000); 0: off."""
    time_mask_stride: int = 16000


@dataclass(kw_only=True)
class CurriculumConfig:
    num_steps: int = 0
    """For the first num_steps optimizer steps, train only on utterances of <= max_frames (0: off)."""
    max_frames: int = 100


@dataclass(kw_only=True)
class DatasetConfig:
    """The ``dataset`` section of a training config."""

    path: Path | None = None
    """Prepared data folder (avsr-prepare's OUT, holding train.tsv, val.tsv, ...)."""
    tokenizer: Path | None = None
    """Tokenizer folder (avsr-prepare tokenizer's OUT)."""
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    """Manifests to train on: split names under ``path`` or paths to .tsv files."""
    valid_split: str | None = "val"
    """Manifest to validate on (name or path); null: no validation."""
    max_frames_per_batch: int = 1600
    """Cap on padded frames per batch (items x longest); audio counts 640 samples per frame."""
    max_batch_size: int = 64
    valid_max_frames_per_batch: int | None = None
    """Cap for validation batches (default: max_frames_per_batch)."""
    min_frames: int = 1
    max_frames: int | None = None
    """Longest utterance trained on (default: max_frames_per_batch); longer ones are skipped."""
    max_valid_utterances: int | None = None
    """Validate on at most this many utterances (the first ones of the manifest)."""
    shuffle_window: int = 0
    """Shuffle buffer in utterances (0: the whole shard)."""
    sort_buffer_size: int = 2000
    """Utterances sorted together before batching."""
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    video: VideoAugConfig = field(default_factory=VideoAugConfig)
    audio: AudioAugConfig = field(default_factory=AudioAugConfig)
    num_prefetch: int = 4
    """Batches loaded ahead of the trainer."""
    num_parallel_calls: int = 1
    """Batches loaded at once on fairseq2's thread pool. The loading is Python and holds the GIL:
    a second thread kept no more than one core busy (docs/benchmarks.md, the data pipeline)."""
    cache_video: bool = False
    """Keep decoded crops as uint8 .npy under OUTPUT_DIR/cache/video (never beside the corpus)."""
    labelled_fraction: float = 1.0
    """Train on a seeded random share of the training utterances (few-label experiments; the rest
    can pretrain the front-ends without their transcripts)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction must be in (0, 1], got {self.labelled_fraction}")


# ---------------------------------------------------------------------------------------- batches


def move_tensors(batch: object, names: Sequence[str], device: Device, non_blocking: bool) -> None:
    """Move the batch's tensor attributes ``names`` (those that are not None) to ``device``."""
    for name in names:
        value = getattr(batch, name)
        if value is not None:
            setattr(batch, name, value.to(device, non_blocking=non_blocking))


@dataclass
class AVBatch(SupportsDeviceTransfer):
    """One padded batch. Tensors are None for a modality the model does not use.

    audio (B, S) float32 at 16 kHz, zero padded; audio_lens (B,) int64 samples.
    video (B, T, H, W) float32, normalised pixels, zero padded; video_lens (B,) int64 frames.
    targets (B, L) int64 token ids without sos/eos, padded with -1; target_lens (B,) int64.
    ids / texts: manifest ids and transcripts (as written) of the utterances, in batch order.
    video_corrupted (B,) bool: which videos training on degraded video corrupted (None: none was).
    """

    audio: Tensor | None
    audio_lens: Tensor | None
    video: Tensor | None
    video_lens: Tensor | None
    targets: Tensor
    target_lens: Tensor
    ids: list[str]
    texts: list[str]
    video_corrupted: Tensor | None = None

    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        names = ("audio", "audio_lens", "video", "video_lens", "targets", "target_lens", "video_corrupted")
        move_tensors(self, names, device, non_blocking)

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    @property
    def num_frames(self) -> int:
        """Frames (25 fps) in the batch, padding excluded."""
        if self.video_lens is not None:
            return int(self.video_lens.sum())
        assert self.audio_lens is not None
        return int(self.audio_lens.sum()) // SAMPLES_PER_FRAME

    @property
    def padded_frames(self) -> int:
        if self.video is not None:
            return int(self.video.shape[0] * self.video.shape[1])
        assert self.audio is not None
        return int(self.audio.shape[0] * self.audio.shape[1]) // SAMPLES_PER_FRAME

    @property
    def num_targets(self) -> int:
        return int(self.target_lens.sum())


def collate(items: Sequence[dict[str, Any]], modalities: Sequence[str], video_mean: float, video_std: float) -> AVBatch:
    """Loaded items (``video`` uint8 (T,H,W), ``audio`` float32 (S,), ``tokens``) -> AVBatch."""
    size = len(items)
    targets_list = [it["tokens"] for it in items]
    longest_target = max((len(t) for t in targets_list), default=0)
    targets = torch.full((size, max(longest_target, 1)), -1, dtype=torch.int64)
    for i, t in enumerate(targets_list):
        targets[i, : len(t)] = torch.as_tensor(t, dtype=torch.int64)
    target_lens = torch.tensor([len(t) for t in targets_list], dtype=torch.int64)
    audio = audio_lens = video = video_lens = None
    if "audio" in modalities:
        lengths = [it["audio"].shape[0] for it in items]
        audio = torch.zeros(size, max(lengths), dtype=torch.float32)
        for i, it in enumerate(items):
            audio[i, : lengths[i]] = torch.from_numpy(it["audio"])
        audio_lens = torch.tensor(lengths, dtype=torch.int64)
    if "video" in modalities:
        lengths = [it["video"].shape[0] for it in items]
        height, width = items[0]["video"].shape[1:]
        video = torch.zeros(size, max(lengths), height, width, dtype=torch.float32)
        for i, it in enumerate(items):
            video[i, : lengths[i]] = torch.from_numpy(normalize_pixels(it["video"], video_mean, video_std))
        video_lens = torch.tensor(lengths, dtype=torch.int64)
    corrupted = [bool(it.get("video_corrupted", False)) for it in items]
    return AVBatch(
        audio=audio,
        audio_lens=audio_lens,
        video=video,
        video_lens=video_lens,
        targets=targets,
        target_lens=target_lens,
        ids=[it["id"] for it in items],
        texts=[it["text"] for it in items],
        video_corrupted=torch.tensor(corrupted, dtype=torch.bool) if video is not None and any(corrupted) else None,
    )


# ---------------------------------------------------------------------------------------- examples


def resolve_manifest(root: Path | None, split: str) -> Path:
    """A split name under ``root`` (``train`` -> ROOT/train.tsv), or a path to a .tsv manifest."""
    if split.endswith(".tsv") or "/" in split or os.sep in split:
        return Path(split)
    if root is None:
        raise DatasetError(f"split {split!r} needs dataset.path (the prepared data folder)")
    return root / f"{split}.tsv"


@dataclass
class ExampleSet:
    """Rows of some manifests, tokenised; ``skipped`` counts rows left out and why."""

    examples: list[dict[str, Any]]
    skipped: dict[str, int]
    manifests: list[Path]

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def total_frames(self) -> int:
        return sum(ex["frames"] for ex in self.examples)

    def length_summary(self, fps: float = 25.0) -> dict[str, float]:
        """Median, 95th percentile and longest utterance in seconds: how long an input the model
        was trained on (``avsr-decode`` segments long recordings to about this length)."""
        frames = np.array([ex["frames"] for ex in self.examples], dtype=np.float64)
        if frames.size == 0:
            return {}
        return {
            "median": round(float(np.median(frames)) / fps, 2),
            "p95": round(float(np.percentile(frames, 95)) / fps, 2),
            "max": round(float(frames.max()) / fps, 2),
        }


def read_manifest_rows(manifest: Path) -> list[ManifestRow]:
    """The rows of a training manifest; a missing or malformed one is a one-line DatasetError."""
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found (run avsr-prepare first, or check dataset.path)")
    try:
        return read_manifest(manifest)
    except ManifestError as exc:
        raise DatasetError(str(exc)) from None


def dataset_root(path: Path | None, train_splits: Sequence[str]) -> Path | None:
    """The prepared data folder of a dataset section (checked), or None when splits are paths."""
    root = None if path is None else Path(path)
    if root is not None and not root.is_dir():
        raise DatasetError(f"{root}: prepared data folder not found (dataset.path; make it with avsr-prepare)")
    if not train_splits:
        raise DatasetError("dataset.train_splits is empty")
    return root


def load_examples(
    manifests: Sequence[Path],
    tokenizer: Tokenizer,
    *,
    min_frames: int = 1,
    max_frames: int | None = None,
    limit: int | None = None,
) -> ExampleSet:
    """Read manifests into example dicts (absolute media paths, token ids), skipping unusable rows.

    Skipped (counted by reason): an empty transcript after normalisation, fewer than ``min_frames``
    or more than ``max_frames`` frames, and more tokens than frames (CTC cannot align those).
    """
    examples: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for manifest in manifests:
        base = manifest.parent.resolve()
        for row in read_manifest_rows(manifest):
            if limit is not None and len(examples) >= limit:
                break
            tokens = tokenizer.encode(row.text)
            if not tokens:
                skip("empty transcript")
                continue
            if row.frames < min_frames:
                skip(f"shorter than {min_frames} frames")
                continue
            if max_frames is not None and row.frames > max_frames:
                skip(f"longer than {max_frames} frames")
                continue
            if len(tokens) > row.frames:
                skip("more tokens than frames")
                continue
            examples.append(
                {
                    "id": row.id,
                    "video": str(base / row.video),
                    "audio": str(base / row.audio),
                    "frames": int(row.frames),
                    "samples": int(row.samples),
                    "text": row.text,
                    "tokens": tokens,
                }
            )
    return ExampleSet(examples, skipped, list(manifests))


# ---------------------------------------------------------------------------------------- loading


@dataclass
class PipelineState:
    """Shared, checkpointed counters: the reader's epoch and the number of steps it delivered."""

    epoch: int = 0
    steps: int = 0


class BatchLoader:
    """Loads and augments one batch of example dicts; picklable and thread-safe (no mutable state)."""

    def __init__(
        self,
        config: DatasetConfig,
        modalities: Sequence[str],
        *,
        train: bool,
        seed: int,
        rank: int,
        state: PipelineState,
        babble: np.ndarray | None = None,
        cache_dir: Path | None = None,
        donors: Sequence[dict[str, Any]] = (),
    ) -> None:
        """``donors``: examples whose video the ``wrong_face`` corruption may take when a batch
        has a single clip (the training set)."""
        self.config = config
        self.modalities = tuple(modalities)
        self.train = train
        self.seed = seed
        self.rank = rank
        self.state = state
        self.babble = babble
        self.cache_dir = cache_dir
        self.donors = donors
        self._warned: set[str] = set()

    # one item -------------------------------------------------------------------------------
    def _noise(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config.noise
        if self.train:
            if cfg.prob <= 0 or rng.random() >= cfg.prob:
                return audio
            kind = cfg.kinds[int(rng.integers(0, len(cfg.kinds)))] if cfg.kinds else "white"
            if cfg.snr_choices:
                snr = float(cfg.snr_choices[int(rng.integers(0, len(cfg.snr_choices)))])
            else:
                low, high = cfg.snr_db
                snr = float(rng.uniform(low, high)) if high > low else float(low)
        else:
            if cfg.valid_snr_db is None:
                return audio
            kind, snr = (cfg.kinds[0] if cfg.kinds else "white"), float(cfg.valid_snr_db)
        if kind == "babble" and self.babble is not None:
            noise = augment.cyclic_slice(self.babble, audio.shape[0], rng)
        else:
            noise = augment.white_noise(audio.shape[0], rng)
        return augment.mix_at_snr(audio, noise, snr)

    def load_item(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        item: dict[str, Any] = {"id": example["id"], "text": example["text"], "tokens": example["tokens"]}
        num_frames = example["frames"]
        vcfg = self.config.video
        if "video" in self.modalities:
            video = read_mouth_video_cached(example["video"], self.cache_dir)
            video = crop(video, vcfg.crop_size, rng if (self.train and vcfg.random_crop) else None)
            if self.train:
                if vcfg.hflip_prob > 0 and rng.random() < vcfg.hflip_prob:
                    video = augment.hflip(video)
                video = augment.time_mask(video, vcfg.time_mask_window, vcfg.time_mask_stride, rng)
            item["video"] = np.ascontiguousarray(video)
            num_frames = video.shape[0]
        if "audio" in self.modalities:
            audio = read_wav(example["audio"])
            if "video" in self.modalities:  # keep the streams aligned: 640 samples per frame
                wanted = num_frames * SAMPLES_PER_FRAME
                if audio.shape[0] < wanted:
                    audio = np.pad(audio, (0, wanted - audio.shape[0]))
                audio = audio[:wanted]
            audio = self._noise(audio, rng)
            if self.train:
                acfg = self.config.audio
                audio = augment.time_mask(audio, acfg.time_mask_window, acfg.time_mask_stride, rng)
            item["audio"] = np.ascontiguousarray(audio, dtype=np.float32)
        return item

    def _corrupt_videos(self, items: list[dict[str, Any]], index: int) -> None:
        """Training on degraded video (``video.corruption``): replace some items' video in place."""
        cfg = self.config.video.corruption
        prob = cfg.prob_at(self.state.steps)
        if prob <= 0 or not items or "video" not in items[0]:
            return
        rng = rng_for(self.seed, self.rank, self.state.epoch, index, "video_corruption")
        clean = [it["video"] for it in items]
        for k, item in enumerate(items):
            if rng.random() >= prob:
                continue
            kind = cfg.kinds[int(rng.integers(0, len(cfg.kinds)))]
            donor = None
            if kind == "wrong_face":
                donor = self._donor(clean, k, item["id"], rng)
                if donor is None:
                    continue
            item["video"] = np.ascontiguousarray(augment.corrupt_video(item["video"], kind, rng, donor))
            item["video_corrupted"] = True

    def _donor(self, clean: list[np.ndarray], k: int, own_id: str, rng: np.random.Generator) -> np.ndarray | None:
        """Another clip's video: one of the batch's others, else a random training utterance's."""
        if len(clean) > 1:
            j = int(rng.integers(0, len(clean) - 1))
            return clean[j + (j >= k)]
        candidates = [ex for ex in self.donors if ex["id"] != own_id]
        if not candidates:
            return None
        example = candidates[int(rng.integers(0, len(candidates)))]
        try:
            video = read_mouth_video_cached(example["video"], self.cache_dir)
            return crop(video, self.config.video.crop_size, rng if self.config.video.random_crop else None)
        except (MediaError, ValueError):
            return None

    # one batch ------------------------------------------------------------------------------
    def __call__(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        examples = batch["examples"]
        rng = rng_for(self.seed, self.rank, self.state.epoch if self.train else 0, batch["index"])
        items = []
        for example in examples:
            try:
                items.append(self.load_item(example, rng))
            except (MediaError, ValueError) as exc:
                if example["id"] not in self._warned:
                    self._warned.add(example["id"])
                    log.warning("skipping %s: %s", example["id"], exc)
        if self.train:
            self._corrupt_videos(items, batch["index"])
        return items


# ---------------------------------------------------------------------------------------- readers


class AVDataReader(DataReader[AVBatch]):
    """fairseq2's `DataPipelineReader` plus the epoch/step counters the augmentation seeds use.

    ``reset()`` (the end of an epoch) advances the epoch before the pipeline refills, and
    ``state_dict()`` saves the counters with the pipeline's own state.
    """

    def __init__(self, inner: DataPipelineReader[AVBatch], state: PipelineState) -> None:
        self._inner = inner
        self._state = state

    def __iter__(self) -> AVDataReader:
        return self

    def __next__(self) -> list[AVBatch]:
        batches = next(self._inner)
        self._state.steps += 1
        return batches

    def reset(self) -> None:
        self._state.epoch += 1
        self._inner.reset()

    def state_dict(self) -> dict[str, object]:
        return {"pipeline": self._inner.state_dict(), "epoch": self._state.epoch, "steps": self._state.steps}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self._state.epoch = int(state_dict["epoch"])  # type: ignore[call-overload]
        self._state.steps = int(state_dict["steps"])  # type: ignore[call-overload]
        self._inner.load_state_dict(state_dict["pipeline"])  # type: ignore[arg-type]

    @property
    def num_accumulate(self) -> int:
        return self._inner.num_accumulate

    @property
    def state(self) -> PipelineState:
        return self._state


def _batches_of_bucket(
    bucket: list[dict[str, Any]],
    config: DatasetConfig,
    max_frames_per_batch: int,
    seed: int,
    rank: int,
    state: PipelineState,
) -> DataPipeline:
    lengths = [ex["example"]["frames"] for ex in bucket]
    groups = make_batches(lengths, max_frames_per_batch, config.max_batch_size)
    first = min(ex["n"] for ex in bucket)
    order = rng_for(seed, rank, state.epoch, "order", first).permutation(len(groups))
    batches = [
        {"examples": [bucket[i]["example"] for i in groups[j]], "index": min(bucket[i]["n"] for i in groups[j])}
        for j in order
    ]
    return read_sequence(batches).and_return()


def build_train_pipeline(
    examples: Sequence[dict[str, Any]],
    config: DatasetConfig,
    loader: BatchLoader,
    *,
    seed: int,
    rank: int,
    world_size: int,
    state: PipelineState,
) -> DataPipeline:
    """The training pipeline of one rank (see the module docstring); yields AVBatch."""
    max_frames = config.max_frames_per_batch
    curriculum = config.curriculum

    def keep(entry: dict[str, Any]) -> bool:
        return (
            curriculum.num_steps <= 0
            or state.steps >= curriculum.num_steps
            or entry["example"]["frames"] <= curriculum.max_frames
        )

    source = read_sequence(list(examples))
    if world_size > 1:
        source = source.shard(rank, world_size)
    source = source.shuffle(config.shuffle_window, seed=derive_seed(seed, rank, "shuffle") % (2**31))
    numbered = DataPipeline.zip([source.and_return(), DataPipeline.count(0).and_return()], names=["example", "n"])
    builder = (
        numbered.filter(keep)
        .bucket(config.sort_buffer_size)
        .yield_from(lambda bucket: _batches_of_bucket(bucket, config, max_frames, seed, rank, state))
        .map(loader, num_parallel_calls=max(1, config.num_parallel_calls))
        .filter(lambda items: len(items) > 0)
        .prefetch(max(1, config.num_prefetch))
        .map(lambda items: collate(items, loader.modalities, config.video.mean, config.video.std))
    )
    return builder.and_return()


def build_valid_pipeline(
    examples: Sequence[dict[str, Any]],
    config: DatasetConfig,
    loader: BatchLoader,
    *,
    rank: int,
    world_size: int,
) -> DataPipeline:
    """Validation: every utterance once, longest first, no augmentation; yields AVBatch."""
    max_frames = config.valid_max_frames_per_batch or config.max_frames_per_batch
    shard = [ex for i, ex in enumerate(examples) if i % world_size == rank]
    groups = make_batches(
        [ex["frames"] for ex in shard],
        max(max_frames, max((ex["frames"] for ex in shard), default=1)),
        config.max_batch_size,
        descending=True,
    )
    batches = [{"examples": [shard[i] for i in g], "index": k} for k, g in enumerate(groups)]
    builder = (
        read_sequence(batches)
        .map(loader, num_parallel_calls=max(1, config.num_parallel_calls))
        .filter(lambda items: len(items) > 0)
        .prefetch(max(1, config.num_prefetch))
        .map(lambda items: collate(items, loader.modalities, config.video.mean, config.video.std))
    )
    return builder.and_return()


def build_babble_bank(
    examples: Sequence[dict[str, Any]], config: NoiseConfig, seed: int, cache_dir: Path | None
) -> np.ndarray | None:
    """The cyclic babble track for ``config`` from the training examples (cached under ``cache_dir``)."""
    if "babble" not in config.kinds or (config.prob <= 0 and config.valid_snr_db is None) or not examples:
        return None
    total = max(SAMPLES_PER_FRAME, int(round(config.babble_seconds * AUDIO_RATE)))
    key = derive_seed(seed, total, config.babble_utterances, len(examples), examples[0]["id"], examples[-1]["id"])
    target = None if cache_dir is None else cache_dir / f"babble_{key:016x}.npy"
    if target is not None and target.is_file():
        try:
            return np.load(target)
        except (OSError, ValueError):
            pass
    # the training set in a fixed order, so every rank builds the same track
    pool = sorted(examples, key=lambda ex: ex["id"])
    bank = augment.make_babble_bank(
        lambda i: read_wav(pool[i]["audio"]),
        len(pool),
        [ex["samples"] for ex in pool],
        total,
        config.babble_utterances,
        rng_for(seed, "babble"),
    )
    if target is not None:
        save_cache(target, bank)
    return bank


class AVDataset:
    """The manifests of one training run, tokenised, with readers for fairseq2's trainer."""

    def __init__(
        self,
        config: DatasetConfig,
        tokenizer: Tokenizer,
        modalities: Sequence[str],
        *,
        seed: int = 2,
        cache_dir: Path | None = None,
    ) -> None:
        for m in modalities:
            if m not in MODALITIES:
                raise DatasetError(f"unknown modality {m!r} (expected audio and/or video)")
        self.config = config
        self.tokenizer = tokenizer
        self.modalities = tuple(modalities)
        self.seed = seed
        self.cache_dir = cache_dir
        root = dataset_root(config.path, config.train_splits)
        max_frames = config.max_frames or config.max_frames_per_batch
        if max_frames > config.max_frames_per_batch:
            raise DatasetError(
                f"dataset.max_frames ({max_frames}) exceeds dataset.max_frames_per_batch ({config.max_frames_per_batch})"
            )
        self.train = load_examples(
            [resolve_manifest(root, s) for s in config.train_splits],
            tokenizer,
            min_frames=config.min_frames,
            max_frames=max_frames,
        )
        self.train.examples = labelled_subset(self.train.examples, config.labelled_fraction, seed)
        if not self.train.examples:
            raise DatasetError(
                f"no usable training utterances in {', '.join(map(str, self.train.manifests))} (skipped: {self.train.skipped})"
            )
        self.valid: ExampleSet | None = None
        if config.valid_split:
            self.valid = load_examples(
                [resolve_manifest(root, config.valid_split)], tokenizer, min_frames=1, limit=config.max_valid_utterances
            )
        self._babble: np.ndarray | None = None
        self._babble_built = False

    def describe(self) -> str:
        def one(name: str, s: ExampleSet | None) -> str:
            if s is None:
                return f"{name}: none"
            skipped = ", ".join(f"{v} {k}" for k, v in s.skipped.items())
            hours = s.total_frames / 25 / 3600
            return f"{name}: {len(s)} utterances ({hours:.2f} h)" + (f", skipped {skipped}" if skipped else "")

        return f"{one('train', self.train)}; {one('valid', self.valid)}"

    @property
    def babble(self) -> np.ndarray | None:
        if not self._babble_built:
            self._babble = build_babble_bank(self.train.examples, self.config.noise, self.seed, self.cache_dir)
            self._babble_built = True
        return self._babble

    def _video_cache(self) -> Path | None:
        if not self.config.cache_video or self.cache_dir is None:
            return None
        return self.cache_dir / "video"

    def create_train_reader(self, gangs: Gangs, *, num_accumulate: int = 1) -> AVDataReader:
        state = PipelineState()
        rank, world = gangs.dp.rank, gangs.dp.size
        loader = BatchLoader(
            self.config,
            self.modalities,
            train=True,
            seed=self.seed,
            rank=rank,
            state=state,
            babble=self.babble,
            cache_dir=self._video_cache(),
            donors=self.train.examples,
        )
        pipeline = build_train_pipeline(
            self.train.examples, self.config, loader, seed=self.seed, rank=rank, world_size=world, state=state
        )
        inner = DataPipelineReader[AVBatch](
            pipeline, gangs, num_accumulate=num_accumulate, sync_mode=SyncMode.UNTIL_FIRST
        )
        return AVDataReader(inner, state)

    def create_valid_reader(self, gangs: Gangs, modalities: Sequence[str] | None = None) -> AVDataReader:
        if self.valid is None:
            raise DatasetError("no validation split configured (dataset.valid_split)")
        state = PipelineState()
        rank, world = gangs.dp.rank, gangs.dp.size
        loader = BatchLoader(
            self.config,
            modalities or self.modalities,
            train=False,
            seed=self.seed,
            rank=rank,
            state=state,
            babble=self.babble if self.config.noise.valid_snr_db is not None else None,
            cache_dir=self._video_cache(),
        )
        pipeline = build_valid_pipeline(self.valid.examples, self.config, loader, rank=rank, world_size=world)
        inner = DataPipelineReader[AVBatch](pipeline, gangs, sync_mode=SyncMode.UNTIL_LAST)
        return AVDataReader(inner, state)


def iter_batches(reader: DataReader[AVBatch]) -> Iterator[AVBatch]:
    """Every batch of a reader until its end of data (a helper for scripts and tests)."""
    for batches in reader:
        yield from batches
