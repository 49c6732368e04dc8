"""Image-text retrieval sets from Karpathy-split JSON (COCO 5k test, Flickr30k 1k test).

Retrieval papers report R@K on these fixed splits, so reading the same JSON keeps our numbers
comparable. Images with several captions are flattened into one caption list that remembers
the index of each caption's image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vision_language.data.errors import DataError

TRAIN_ALIASES = {"train": ("train", "restval")}


@dataclass(frozen=True)
class RetrievalSet:
    """Images, captions, and for each caption the index of its image."""

    image_paths: list[Path]
    captions: list[str]
    caption_image: list[int]

    def image_captions(self) -> list[list[int]]:
        """For each image the indices of its captions (the positives in image-to-text retrieval)."""
        groups: list[list[int]] = [[] for _ in self.image_paths]
        for caption_index, image_index in enumerate(self.caption_image):
            groups[image_index].append(caption_index)
        return groups


def read_karpathy(json_path: str | Path, image_root: str | Path, split: str = "test") -> RetrievalSet:
    """Read one split; ``train`` includes ``restval``, as in the usual Karpathy training set."""
    json_path, image_root = Path(json_path), Path(image_root)
    entries = _load_entries(json_path)
    wanted = TRAIN_ALIASES.get(split, (split,))
    image_paths: list[Path] = []
    captions: list[str] = []
    caption_image: list[int] = []
    splits_seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{json_path}: images[{index}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object")
        entry_split = str(entry.get("split", ""))
        splits_seen.add(entry_split)
        if entry_split not in wanted:
            continue
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename:
            raise DataError(f"{where}: missing 'filename'")
        folder = entry.get("filepath") or ""
        image_index = len(image_paths)
        image_paths.append(image_root / folder / filename)
        for text in _sentences(entry, where):
            captions.append(text)
            caption_image.append(image_index)
    if not image_paths:
        available = ", ".join(sorted(s for s in splits_seen if s)) or "none"
        raise DataError(f"{json_path}: no images in split {split!r} (splits present: {available})")
    return RetrievalSet(image_paths=image_paths, captions=captions, caption_image=caption_image)


def _load_entries(json_path: Path) -> list:
    if not json_path.is_file():
        raise DataError(f"{json_path}: file not found")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{json_path}: invalid JSON ({error.msg} at line {error.lineno})") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{json_path}: not UTF-8 text") from error
    entries = document.get("images") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{json_path}: expected a Karpathy-split object with an 'images' list")
    return entries


def _sentences(entry: dict, where: str) -> list[str]:
    sentences = entry.get("sentences", [])
    if not isinstance(sentences, list):
        raise DataError(f"{where}: 'sentences' is not a list")
    texts = []
    for number, sentence in enumerate(sentences):
        if isinstance(sentence, str):
            text = sentence
        elif isinstance(sentence, dict):
            raw = sentence.get("raw")
            tokens = sentence.get("tokens")
            text = raw if isinstance(raw, str) else " ".join(tokens) if isinstance(tokens, list) else ""
        else:
            raise DataError(f"{where}: sentences[{number}] is neither text nor an object")
        text = text.strip()
        if text:
            texts.append(text)
    return texts
