"""Data layer: image-caption pairs, class folders, Karpathy retrieval splits, the synthetic world."""

from __future__ import annotations

from vision_language.data.class_folders import ClassFolderSet, read_class_folders
from vision_language.data.errors import DataError, DataWarning
from vision_language.data.karpathy import RetrievalSet, read_karpathy
from vision_language.data.pairs import ImageTextPair, expand_braces, load_image, read_pairs
from vision_language.data.synthetic_world import SceneAttrs, WorldSummary, caption_for, make_world, render_scene

__all__ = [
    "ClassFolderSet",
    "DataError",
    "DataWarning",
    "ImageTextPair",
    "RetrievalSet",
    "SceneAttrs",
    "WorldSummary",
    "caption_for",
    "expand_braces",
    "load_image",
    "make_world",
    "read_class_folders",
    "read_karpathy",
    "read_pairs",
    "render_scene",
]
