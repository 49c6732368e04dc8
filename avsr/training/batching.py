"""Length bucketing: group utterances into batches bounded by padded frames and batch size.

A batch of utterances with lengths ``l_1..l_B`` (25 fps video frames; audio has 640 samples per
frame) costs ``B * max(l_i)`` padded frames, the size of the padded tensors the model sees. Batches
are made from a buffer of utterances sorted by length, so neighbours have similar lengths and
padding is small; the order of the batches is then shuffled so training does not see short
batches first and long ones last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

_T = TypeVar("_T")


def make_batches(
    lengths: Sequence[int],
    max_frames_per_batch: int,
    max_batch_size: int,
    *,
    descending: bool = False,
) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches, each of padded cost <= the cap.

    Utterances are sorted by length (stable, ascending unless ``descending``) and packed greedily:
    a batch is closed when adding the next utterance would exceed ``max_batch_size`` items or
    ``max_frames_per_batch`` padded frames (``count * longest``). An utterance longer than the cap on
    its own cannot be batched and raises ``ValueError``: filter such items out first.
    """
    if max_frames_per_batch < 1 or max_batch_size < 1:
        raise ValueError("max_frames_per_batch and max_batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=descending)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = int(lengths[index])
        if length > max_frames_per_batch:
            raise ValueError(f"an utterance of {length} frames exceeds max_frames_per_batch={max_frames_per_batch}")
        new_longest = max(longest, length)
        if current and (len(current) + 1 > max_batch_size or (len(current) + 1) * new_longest > max_frames_per_batch):
            batches.append(current)
            current, new_longest = [], length
        current.append(index)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def padded_frames(lengths: Sequence[int]) -> int:
    """The padded cost of one batch: number of items times the longest."""
    return len(lengths) * max(lengths) if lengths else 0


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes and Python versions)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy generator seeded from ``parts`` (e.g. run seed, rank, epoch, batch index)."""
    return np.random.default_rng(derive_seed(*parts))


def labelled_subset(items: Sequence[_T], fraction: float, seed: int) -> list[_T]:
    """A seeded random ``fraction`` of ``items`` (at least one), in their original order: the
    labelled share of few-label experiments; the same seed always picks the same items."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labelled_fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return list(items)
    keep = rng_for(seed, "labelled").permutation(len(items))[: max(1, round(fraction * len(items)))]
    return [items[i] for i in sorted(keep)]
