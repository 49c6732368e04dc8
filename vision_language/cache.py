"""Embedding cache: each frozen encoder runs once over a dataset; training then reads its features.

SAIL's main speed trick: with both encoders frozen, a projector step needs only their outputs, so
computing them once turns training from encoder-bound into memory-bound. The features are stored as
fp16 ``.npy`` shards of ``shard_size`` items (memory-mapped when read), beside ``keys.txt`` (one item
key per line, in order) and ``index.json`` (encoder, source, item shape, finished shards). Building
is resumable: a shard is written whole (temporary file, then rename) and only then counted in the
index, so an interrupted run redoes at most one shard, and a rerun of a finished cache is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avsr.media.atomic import atomic_path

INDEX_FILE = "index.json"
KEYS_FILE = "keys.txt"
FORMAT = "vl-embedding-cache/1"
#: Caches up to this size are read into memory whole; larger ones are gathered from memory maps.
IN_MEMORY_BYTES = 4 << 30


class CacheError(ValueError):
    """A cache folder that cannot be used (another encoder's, half-written keys, a bad index)."""


@dataclass
class CacheIndex:
    modality: str
    encoder: dict[str, Any]
    source: str
    num_items: int
    item_shape: list[int]
    shard_size: int
    complete_shards: int = 0
    format: str = FORMAT
    dtype: str = "float16"

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.shard_size)

    @property
    def complete(self) -> bool:
        return self.complete_shards >= self.num_shards

    def shard_file(self, shard: int) -> str:
        return f"shard_{shard:05d}.npy"


def cache_folder(root: str | os.PathLike[str], modality: str, encoder: dict[str, Any], source: str) -> Path:
    """Where the cache of (modality, encoder, source) lives under ``root``: a readable name plus a
    hash of everything that changes the features, so that two configs never share a folder."""
    digest = hashlib.sha256(json.dumps([modality, encoder, source], sort_keys=True).encode()).hexdigest()[:12]
    stem = Path(source).stem or "data"
    name = str(encoder.get("name") or Path(str(encoder.get("path") or "encoder")).name)
    return Path(root) / f"{modality}-{stem}-{name}-{digest}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as temp:
        Path(temp).write_text(json.dumps(data, indent=1), encoding="utf-8")


def _read_index(folder: Path) -> CacheIndex:
    try:
        data = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise CacheError(f"{folder / INDEX_FILE}: not an embedding cache ({data.get('format')!r})")
        return CacheIndex(**data)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise CacheError(f"{folder / INDEX_FILE}: unreadable cache index ({exc})") from None


def build_cache(
    folder: str | os.PathLike[str],
    items: Sequence[Any],
    keys: Sequence[str],
    encode: Callable[[list[Any]], Tensor],
    *,
    modality: str,
    encoder: dict[str, Any],
    source: str,
    batch_size: int = 64,
    shard_size: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> EmbeddingCache:
    """Run ``encode`` (a batch of items -> (B, ...) features) over ``items`` into ``folder``;
    resumes a partial cache of the same encoder and source. ``progress(n)`` is called after each
    batch with the number of items done in it."""
    folder = Path(folder)
    if len(items) != len(keys) or not items:
        raise CacheError(
            f"{folder}: need one key per item and at least one item (got {len(items)} items, {len(keys)} keys)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    index: CacheIndex | None = None
    if (folder / INDEX_FILE).is_file():
        index = _read_index(folder)
        if (index.modality, index.encoder, index.source, index.num_items, index.shard_size) != (
            modality,
            encoder,
            source,
            len(items),
            shard_size,
        ):
            raise CacheError(f"{folder}: holds a cache of another encoder or dataset; remove it or use another folder")
        existing = (folder / KEYS_FILE).read_text(encoding="utf-8").splitlines()
        if existing != list(keys):
            raise CacheError(f"{folder / KEYS_FILE}: the items changed since the cache was started; remove {folder}")
    else:
        with atomic_path(folder / KEYS_FILE) as temp:
            Path(temp).write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    if index is not None and progress is not None:
        progress(min(index.complete_shards * index.shard_size, len(items)))
    for shard in range(index.complete_shards if index else 0, -(-len(items) // shard_size)):
        chunk = items[shard * shard_size : (shard + 1) * shard_size]
        parts = []
        for start in range(0, len(chunk), batch_size):
            batch = list(chunk[start : start + batch_size])
            with torch.no_grad():
                parts.append(encode(batch).detach().float().cpu().numpy().astype(np.float16))
            if progress is not None:
                progress(len(batch))
        features = np.concatenate(parts)
        if len(features) != len(chunk):
            raise CacheError(f"{folder}: the encoder returned {len(features)} rows for {len(chunk)} items")
        if index is None:
            index = CacheIndex(modality, encoder, source, len(items), list(features.shape[1:]), shard_size)
        elif list(features.shape[1:]) != index.item_shape:
            raise CacheError(f"{folder}: features of shape {features.shape[1:]} in a cache of {index.item_shape}")
        with atomic_path(folder / index.shard_file(shard)) as temp:
            with open(temp, "wb") as f:
                np.save(f, features)
        index.complete_shards = shard + 1
        _write_json(folder / INDEX_FILE, asdict(index))
    assert index is not None
    return EmbeddingCache(folder)


class EmbeddingCache:
    """A finished cache: ``get(indices)`` -> float32 features (rows in ``keys`` order)."""

    def __init__(self, folder: str | os.PathLike[str], *, in_memory: bool | None = None) -> None:
        self.folder = Path(folder)
        self.index = _read_index(self.folder)
        if not self.index.complete:
            raise CacheError(
                f"{self.folder}: unfinished cache ({self.index.complete_shards} of {self.index.num_shards} shards); rerun vl-embed to finish it"
            )
        self.keys = (self.folder / KEYS_FILE).read_text(encoding="utf-8").splitlines()
        if len(self.keys) != self.index.num_items:
            raise CacheError(f"{self.folder / KEYS_FILE}: {len(self.keys)} keys for {self.index.num_items} items")
        self._shards = [
            np.load(self.folder / self.index.shard_file(s), mmap_mode="r") for s in range(self.index.num_shards)
        ]
        size = self.index.num_items * int(np.prod(self.index.item_shape)) * 2
        if in_memory is None:
            in_memory = size <= IN_MEMORY_BYTES
        self._all = torch.from_numpy(np.concatenate(self._shards)) if in_memory else None

    def __len__(self) -> int:
        return self.index.num_items

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.index.item_shape)

    @property
    def encoder(self) -> dict[str, Any]:
        return self.index.encoder

    def get(self, indices: Sequence[int] | np.ndarray | Tensor) -> Tensor:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if self._all is not None:
            return self._all[idx].float()
        size = self.index.shard_size
        out = np.empty((len(idx), *self.index.item_shape), dtype=np.float16)
        shard_of, local = (idx // size).numpy(), (idx % size).numpy()
        for shard in np.unique(shard_of):
            rows = np.nonzero(shard_of == shard)[0]
            out[rows] = self._shards[int(shard)][local[rows]]
        return torch.from_numpy(out).float()

    def all(self) -> Tensor:
        return self.get(np.arange(len(self)))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)


__all__ = ["CacheError", "CacheIndex", "EmbeddingCache", "build_cache", "cache_folder"]
