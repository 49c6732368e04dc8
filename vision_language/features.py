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

from vision_language.cache import INDEX_FILE, CacheError, EmbeddingCache, build_cache, cache_folder
from vision_language.encoders import ImageEncoderConfig, TextEncoderConfig, build_image_encoder, build_text_encoder

log = logging.getLogger("vision_language")


class EncoderError(ValueError):
    """An encoder that cannot be built: missing or unreadable weights, a folder without a model."""


def encoder_identity(config: ImageEncoderConfig | TextEncoderConfig) -> dict[str, Any]:
    """What names an encoder's features in a cache index: its whole config, the weights' size and
    modification time (a replaced weights file gives a new cache), and the kind."""
    data = dataclasses.asdict(config)
    data["kind"] = "image" if isinstance(config, ImageEncoderConfig) else "text"
    path = data.get("path")
    if path and Path(path).exists():
        target = Path(path)
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        data["weights_stamp"] = (
            [sum(p.stat().st_size for p in files), int(max(p.stat().st_mtime for p in files))] if files else None
        )
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
    from avsr.console import progress_bar

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
    try:
        encoder = build_image_encoder(config) if modality == "image" else build_text_encoder(config)  # type: ignore[arg-type]
    except (OSError, ValueError, RuntimeError) as exc:
        raise EncoderError(f"{modality} encoder: {exc}") from None
    encoder.eval()

    def encode(batch: list[Any]):
        inputs = [loader(x) for x in batch] if loader is not None else batch
        return encoder(encoder.preprocess(inputs))

    log.info("caching %s features of %d items from %s in %s", modality, len(items), source, folder)
    with _progress(f"{modality} features", len(items), options.show_progress) as advance:
        return build_cache(
            folder,
            items,
            keys,
            encode,
            modality=modality,
            encoder=identity,
            source=source,
            batch_size=options.batch_size,
            shard_size=options.shard_size,
            progress=advance,
        )


@dataclass
class PairFeatures:
    """A paired dataset in cache form: pair i is (image row ``image_rows[i]``, text row ``text_rows[i]``)."""

    images: EmbeddingCache
    texts: EmbeddingCache
    image_rows: np.ndarray
    text_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.image_rows)


def pair_features(
    source: str | os.PathLike[str], image: ImageEncoderConfig, text: TextEncoderConfig, options: EncodeOptions
) -> PairFeatures:
    """Features of an image-caption pairs file (TSV/CSV or WebDataset shards): every distinct image
    once, every caption once."""
    from vision_language.data import load_image, read_pairs

    pairs = read_pairs(source)
    images, image_keys, caption_image = distinct_images(pairs)
    name = source_name(source)
    image_cache = cached_features(images, image_keys, image, name, options, loader=load_image)
    texts = cached_features([p.caption for p in pairs], [p.key for p in pairs], text, name, options)
    return PairFeatures(
        image_cache, texts, np.array(caption_image, dtype=np.int64), np.arange(len(pairs), dtype=np.int64)
    )


def distinct_images(pairs: Sequence[Any]) -> tuple[list[Any], list[str], list[int]]:
    """Each image of a pairs list once (by path, or by key for images inside shards), their keys,
    and for every pair (caption) the index of its image: several captions may share an image."""
    index: dict[str, int] = {}
    images: list[Any] = []
    caption_image = []
    for pair in pairs:
        ident = str(pair.image_path) if pair.image_path is not None else pair.key
        if ident not in index:
            index[ident] = len(images)
            images.append(pair)
        caption_image.append(index[ident])
    return images, list(index), caption_image


def source_name(source: str | os.PathLike[str]) -> str:
    """How a data source is named in cache indexes: its absolute path when it is a file or folder."""
    return os.fspath(Path(source).resolve()) if Path(source).exists() else os.fspath(source)


__all__ = [
    "EncodeOptions",
    "EncoderError",
    "PairFeatures",
    "cached_features",
    "distinct_images",
    "encoder_identity",
    "pair_features",
    "source_name",
]
