"""Labelled images in one-folder-per-class layout, the usual zero-shot classification format.

An optional ``classes.txt`` in the root lists class folder names one per line; they join the
class set even when their folder is absent or empty. Zero-shot evaluation needs this so that a
classifier can be asked to choose among classes that have no test images (distractors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vision_language.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CLASS_LIST = "classes.txt"


@dataclass(frozen=True)
class ClassFolderSet:
    """Class names for prompting (``red_circle`` -> ``red circle``), raw folder names and labelled images."""

    root: Path
    class_names: list[str]
    folder_names: list[str]
    items: list[tuple[Path, int]]

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> list[int]:
        """Number of images per class, in class order."""
        counts = [0] * len(self.class_names)
        for _, label in self.items:
            counts[label] += 1
        return counts


def read_class_folders(root: str | Path) -> ClassFolderSet:
    """Read ``root/<class>/**/<image>``; classes are sorted folder names (plus ``classes.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: class-folder root not found")
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    folders |= _listed_classes(root)
    if not folders:
        raise DataError(f"{root}: no class folders")
    folder_names = sorted(folders)
    items: list[tuple[Path, int]] = []
    for label, folder in enumerate(folder_names):
        directory = root / folder
        if directory.is_dir():
            items.extend((path, label) for path in _images_under(directory))
    if not items:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {len(folder_names)} class folders")
    return ClassFolderSet(
        root=root,
        class_names=[prompt_name(folder) for folder in folder_names],
        folder_names=folder_names,
        items=items,
    )


def prompt_name(folder: str) -> str:
    """The class name a text prompt should use: underscores become spaces."""
    return " ".join(folder.replace("_", " ").split())


def _listed_classes(root: Path) -> set[str]:
    listing = root / CLASS_LIST
    if not listing.is_file():
        return set()
    names: set[str] = set()
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if "/" in name or "\\" in name or name in (".", ".."):
            raise DataError(f"{listing}: line {number}: {name!r} is not a folder name")
        names.add(name)
    return names


def _images_under(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")
    )
