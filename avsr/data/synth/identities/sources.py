"""The real face photographs identities are made from: files inside installed packages, never downloaded.

Each source is located through the import system (``importlib.util.find_spec``), so it is there
whenever its package is installed, offline. Only photographs whose licence allows use and
redistribution are listed; the licence and the attribution travel into every corpus's metadata.
A user's own photographs (``avsr-synth --faces DIR``) are sources too, named after their files.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Source:
    """One face photograph: where it lives and under which terms."""

    name: str
    package: str  # import name of the package that ships the file ("" for a user's file)
    path: str  # inside the package (a user's file: its absolute path)
    licence: str
    attribution: str

    def file(self) -> Path:
        """The photograph's path on this machine; FileNotFoundError naming the package when absent."""
        if not self.package:
            return Path(self.path)
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"face source {self.name!r} needs the package {self.package!r} (not installed)")
        path = Path(next(iter(spec.submodule_search_locations))) / self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: face source {self.name!r} is missing from {self.package!r}")
        return path

    def load(self) -> np.ndarray:
        """The photograph as (H, W, 3) uint8 RGB."""
        return read_photo(self.file())


SOURCES: tuple[Source, ...] = (
    Source(
        "astronaut",
        "skimage",
        "data/astronaut.png",
        "Public domain (NASA photograph; 'no known copyright restrictions', scikit-image's data notes)",
        "Eileen Collins, NASA astronaut; NASA Great Images database, via scikit-image (BSD-3-Clause)",
    ),
    Source(
        "grace_hopper",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "Public domain (official US Navy portrait, a work of the US federal government)",
        "Rear Admiral Grace M. Hopper, 1984; US Navy photograph by James S. Davis, via matplotlib's sample data",
    ),
    Source(
        "luispedro",
        "mahotas",
        "demos/data/luispedro.jpg",
        "MIT (shipped as demo data of the MIT-licensed mahotas package)",
        "Luis Pedro Coelho, author of mahotas; his photograph distributed with the package",
    ),
)


def source_named(name: str, extra: tuple[Source, ...] = ()) -> Source:
    for source in (*SOURCES, *extra):
        if source.name == name:
            return source
    raise KeyError(f"no face source named {name!r}")


def read_photo(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; ValueError with one line when it is not an image."""
    import cv2

    data = np.fromfile(os.fspath(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise ValueError(f"{path}: not an image file that can be read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def user_sources(folder: str | os.PathLike[str]) -> tuple[Source, ...]:
    """Every file of ``folder`` (sorted, hidden files skipped) as a source named after it.

    Files are not filtered by suffix: a file that is no image is the user's mistake, reported
    when the photographs are rigged (one line naming the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: --faces needs a folder of face photographs")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder}: holds no photographs")
    return tuple(
        Source(f"user:{p.name}", "", str(p.resolve()), "the user's own photograph", "supplied with --faces")
        for p in files
    )
