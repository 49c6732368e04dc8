"""From a dataset and a frozen encoder to cached features: what vl-embed, vl-train, vl-eval and
vl-align all do first. Each (encoder, data source) pair gets its own cache folder under the cache
root (`vision_language.cache.cache_folder`), so every command reuses what another one computed."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision_language.cache import INDEX_FILE, CacheError, CacheIndex, EmbeddingCache, build_cache, cache_folder
from vision_language.encoders import ImageEncoderConfig, TextEncoderConfig, build_image_encoder, build_text_encoder

log = logging.getLogger("vision_language")


def encoder_identity(config: ImageEncoderConfig | TextEncoderConfig) -> dict[str, Any]:
    """What names an encoder's features in a cache index: its whole config, the weights' size and
    modification time (a replaced weights file gives a new cache), and the kind."""
    data = dataclasses.asdict(config)
    data["kind"] = "image" if isinstance(config, ImageEncoderConfig) else "text"
    path = data.get("path")
    if path and Path(path).exists():
        target = Path(path)
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        data["weights_stamp"] = [sum(p.stat().st_size for p in files), int(max(p.stat().st_mtime for p in files))] if files else None
    return data


@dataclass
class EncodeOptions:
    cache_root: Path
    batch_size: int = 32
    shard_size: int = 4096
    show_progress: bool = True
    #: False: a missing or unfinished cache is an error (ranks of a multi-process run only read).
    allow_build: bool = True


def _progress(description: str, total: int, enabled: bool):
    from avsr.cli.common import progress_bar

    return progress_bar(description, total, enabled)


def cached_features(
    items: Sequence[Any],
    keys: Sequence[str],
    config: ImageEncoderConfig | TextEncoderConfig,
    source: str,
    options: EncodeOptions,
    *,
    loader: Callable[[Any], Any] | None = None,
) -> EmbeddingCache:
    """The cache of ``config``'s features of ``items`` (built, or finished, when needed).

    ``loader`` turns an item into the encoder's input (e.g. an image pair into a PIL image)."""
    identity = encoder_identity(config)
    modality = identity["kind"]
    folder = cache_folder(options.cache_root, modality, identity, source)
    index_file = folder / INDEX_FILE
    if index_file.is_file():
        try:
            return EmbeddingCache(folder)
        except ValueError:
            pass  # unfinished: resume below
    if not options.allow_build:
        raise CacheError(f"{folder}: no finished {modality} feature cache for {source}; build it first with vl-embed")
    encoder = build_image_encoder(config) if modality == "image" else build_text_encoder(config)  # type: ignore[arg-type]
    encoder.eval()

    def encode(batch: list[Any]):
        inputs = [loader(x) for x in batch] if loader is not None else batch
        return encoder(encoder.preprocess(inputs))

    log.info("caching %s features of %d items from %s in %s", modality, len(items), source, folder)
    with _progress(f"{modality} features", len(items), options.show_progress) as advance:
        return build_cache(folder, items, keys, encode, modality=modality, encoder=identity, source=source,
                           batch_size=options.batch_size, shard_size=options.shard_size, progress=advance)


def read_index(folder: str | os.PathLike[str]) -> CacheIndex:
    from vision_language.cache import _read_index

    return _read_index(Path(folder))


@dataclass
class PairFeatures:
    """A paired dataset in cache form: pair i is (image row ``image_rows[i]``, text row ``text_rows[i]``)."""

    images: EmbeddingCache
    texts: EmbeddingCache
    image_rows: np.ndarray
    text_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.image_rows)


def pair_features(source: str | os.PathLike[str], image: ImageEncoderConfig, text: TextEncoderConfig, options: EncodeOptions) -> PairFeatures:
    """Features of an image-caption pairs file (TSV/CSV or WebDataset shards): every distinct image
    once, every caption once."""
    from vision_language.data import load_image, read_pairs

    pairs = read_pairs(source)
    image_row: dict[str, int] = {}
    image_items = []
    for pair in pairs:
        ident = str(pair.image_path) if pair.image_path is not None else pair.key
        if ident not in image_row:
            image_row[ident] = len(image_items)
            image_items.append(pair)
    image_rows = np.array([image_row[str(p.image_path) if p.image_path is not None else p.key] for p in pairs], dtype=np.int64)
    name = os.fspath(Path(source).resolve()) if Path(source).exists() else os.fspath(source)
    images = cached_features(image_items, [str(image_row_key) for image_row_key in image_row], image, name, options, loader=load_image)
    texts = cached_features([p.caption for p in pairs], [p.key for p in pairs], text, name, options)
    return PairFeatures(images, texts, image_rows, np.arange(len(pairs), dtype=np.int64))


__all__ = ["EncodeOptions", "PairFeatures", "cached_features", "encoder_identity", "pair_features"]
