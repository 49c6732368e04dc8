"""A synthetic image-caption world for testing compositional zero-shot transfer offline.

Each image shows one coloured shape of some size at some position on a light background, and
its caption names those attributes with paraphrases and synonyms. A few (colour, shape)
combinations are held out of training: the test split holds only those, so a test accuracy
above chance shows the aligned encoders compose attributes they only saw apart, which is
the behaviour CLIP-style zero-shot classification is about. Same seed, same world, byte for byte.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from itertools import product
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "ring")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
SPLITS: tuple[str, ...] = ("train", "val", "test")

COLOUR_RGB = MappingProxyType(
    {
        "red": (215, 38, 38),
        "green": (40, 160, 60),
        "blue": (40, 80, 215),
        "yellow": (238, 210, 40),
        "purple": (135, 55, 175),
        "orange": (242, 135, 30),
        "white": (248, 248, 248),
        "black": (22, 22, 22),
    }
)

# Words a caption may use for each attribute value; the first is the canonical word that
# class prompts use ("red circle"), the others are paraphrases seen only in captions.
COLOUR_WORDS = MappingProxyType(
    {
        "red": ("red", "crimson", "scarlet"),
        "green": ("green", "emerald", "grass-green"),
        "blue": ("blue", "royal blue", "cobalt"),
        "yellow": ("yellow", "lemon-yellow", "golden"),
        "purple": ("purple", "violet"),
        "orange": ("orange", "tangerine"),
        "white": ("white", "snow-white"),
        "black": ("black", "jet-black"),
    }
)
SHAPE_WORDS = MappingProxyType(
    {
        "circle": ("circle", "disc", "disk", "round shape"),
        "square": ("square", "box", "square shape", "block"),
        "triangle": ("triangle", "triangular shape"),
        "star": ("star", "five-pointed star", "star shape"),
        "cross": ("cross", "plus sign", "plus shape"),
        "heart": ("heart", "heart shape", "love heart"),
        "ring": ("ring", "hoop", "doughnut shape", "ring shape"),
    }
)
SIZE_WORDS = MappingProxyType(
    {
        "small": ("small", "little", "tiny"),
        "large": ("large", "big"),
    }
)
POSITION_WORDS = MappingProxyType(
    {
        "left": (
            "on the left",
            "at the left side",
            "on the left side of the picture",
            "to the left",
            "in the left part of the image",
        ),
        "right": (
            "on the right",
            "at the right side",
            "on the right side of the picture",
            "to the right",
            "in the right part of the image",
        ),
        "top": ("at the top", "near the top", "in the upper part of the image", "at the top of the picture"),
        "bottom": (
            "at the bottom",
            "near the bottom",
            "in the lower part of the image",
            "at the bottom of the picture",
        ),
        "centre": (
            "in the centre",
            "in the middle",
            "at the center",
            "in the middle of the picture",
            "in the center of the image",
        ),
    }
)

SUPERSAMPLE = 4  # shapes are drawn at 4x and box-averaged down: anti-aliased edges
SIZE_RADIUS = MappingProxyType({"small": 0.12, "large": 0.2})  # fraction of the image side
POSITION_CENTRE = MappingProxyType(
    {
        "left": (0.29, 0.5),
        "right": (0.71, 0.5),
        "top": (0.5, 0.29),
        "bottom": (0.5, 0.71),
        "centre": (0.5, 0.5),
    }
)
ROTATING_SHAPES = frozenset({"square", "triangle", "star", "cross", "heart"})
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
TEST_CAPTIONS = 5
OUTPUT_NAMES = frozenset({"images", "zero_shot", "train.tsv", "val.tsv", "test.tsv", "karpathy.json", "world.json"})
CLASS_LIST = "classes.txt"


@dataclass(frozen=True)
class SceneAttrs:
    """The attributes of one scene; the (colour, shape) pair is its zero-shot class."""

    colour: str
    shape: str
    size: str
    position: str

    @property
    def class_folder(self) -> str:
        return class_folder(self.colour, self.shape)

    @property
    def class_name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class WorldConfig:
    """What ``make_world`` builds; checked on creation so a bad option fails before any write."""

    images: int = 3000
    size: int = 64
    seed: int = 0
    held_out: int = 4

    def __post_init__(self) -> None:
        combos = len(COLOURS) * len(SHAPES)
        if not 16 <= self.size <= 1024:
            raise ValueError(f"--size must be between 16 and 1024 pixels, got {self.size}")
        if not 1 <= self.held_out <= combos // 2:
            raise ValueError(f"--held-out must be between 1 and {combos // 2}, got {self.held_out}")
        if self.seed < 0:
            raise ValueError(f"--seed must be non-negative, got {self.seed}")
        minimum = max(20, 2 * self.held_out)
        if self.images < minimum:
            raise ValueError(f"--images must be at least {minimum}, got {self.images}")

    def split_counts(self) -> dict[str, int]:
        """About 80/10/10; the test split has at least one image per held-out pair."""
        val = round(self.images * VAL_FRACTION)
        test = max(self.held_out, round(self.images * TEST_FRACTION))
        return {"train": self.images - val - test, "val": val, "test": test}


@dataclass(frozen=True)
class WorldSummary:
    """What was written, for the command's summary line and for callers."""

    out: Path
    seed: int
    size: int
    counts: dict[str, int]
    held_out: list[tuple[str, str]]
    classes: int
    seconds: float = field(default=0.0, compare=False)

    def line(self) -> str:
        splits = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        held = ", ".join(f"{colour} {shape}" for colour, shape in self.held_out)
        return (
            f"vl-synth: {sum(self.counts.values())} images ({splits}) of {self.size} px, seed {self.seed}, "
            f"held out: {held}; {self.classes} zero-shot classes; {self.seconds:.1f} s -> {self.out}"
        )


def class_folder(colour: str, shape: str) -> str:
    return f"{colour}_{shape}"


def all_classes() -> list[tuple[str, str]]:
    """Every (colour, shape) combination, in sorted folder-name order."""
    return sorted(product(COLOURS, SHAPES), key=lambda pair: class_folder(*pair))


def choose_held_out(seed: int, count: int) -> list[tuple[str, str]]:
    """Pick ``count`` (colour, shape) pairs to keep out of training, deterministically from the seed.

    Up to 7 pairs use distinct colours and distinct shapes; more are drawn at random but never
    remove every pairing of one colour or shape, so every word still occurs in training.
    """
    rng = np.random.default_rng([seed, 101])
    if count <= min(len(COLOURS), len(SHAPES)):
        colours = [COLOURS[i] for i in rng.permutation(len(COLOURS))[:count]]
        shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:count]]
        return sorted(zip(colours, shapes))
    combos = list(product(COLOURS, SHAPES))
    while True:
        chosen = [combos[i] for i in rng.permutation(len(combos))[:count]]
        seen = set(combos) - set(chosen)
        if {c for c, _ in seen} == set(COLOURS) and {s for _, s in seen} == set(SHAPES):
            return sorted(chosen)


def render_scene(
    colour: str, shape: str, size_name: str, position: str, rng: np.random.Generator, px: int = 64
) -> Image.Image:
    """Draw one scene as an RGB ``px`` x ``px`` image; all randomness comes from ``rng``."""
    _check_value("colour", colour, COLOURS)
    _check_value("shape", shape, SHAPES)
    _check_value("size", size_name, SIZES)
    _check_value("position", position, POSITIONS)
    side = px * SUPERSAMPLE
    background, noisy = _background(rng, px)
    radius = SIZE_RADIUS[size_name] * side * rng.uniform(0.92, 1.08)
    fx, fy = POSITION_CENTRE[position]
    cx = (fx + rng.uniform(-0.04, 0.04)) * side
    cy = (fy + rng.uniform(-0.04, 0.04)) * side
    angle = math.radians(rng.uniform(-20, 20)) if shape in ROTATING_SHAPES else 0.0
    # The shape is drawn at SUPERSAMPLE x and box-averaged down: its pixel coverage becomes alpha.
    mask = Image.new("L", (side, side), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, cx, cy, radius, angle)
    mask = mask.resize((px, px), Image.Resampling.BOX)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    fill = np.clip(np.asarray(COLOUR_RGB[colour], dtype=np.float32) + rng.integers(-10, 11, size=3), 0, 255)
    scene = background * (1.0 - alpha) + fill * alpha
    if noisy:
        scene = scene + rng.normal(0.0, rng.uniform(2.0, 5.0), size=scene.shape)
    return Image.fromarray(np.clip(np.rint(scene), 0, 255).astype(np.uint8), mode="RGB")


def caption_for(attrs: SceneAttrs, rng: np.random.Generator) -> str:
    """One caption for the scene: synonyms, several word orders, size or position sometimes left out."""
    colour = _word(rng, COLOUR_WORDS[attrs.colour], canonical=0.8)
    shape = _word(rng, SHAPE_WORDS[attrs.shape], canonical=0.6)
    size = _word(rng, SIZE_WORDS[attrs.size], canonical=0.6) if rng.random() > 0.25 else None
    place = _word(rng, POSITION_WORDS[attrs.position], canonical=0.4) if rng.random() > 0.25 else None
    form = _CAPTION_FORMS[int(rng.integers(len(_CAPTION_FORMS)))]
    return " ".join(form(colour, shape, size, place).split())


def make_world(
    out: str | Path, *, images: int = 3000, size: int = 64, seed: int = 0, held_out: int = 4
) -> WorldSummary:
    """Render the world under ``out`` (see the module docstring of ``vision_language.cli.synth``)."""
    config = WorldConfig(images=images, size=size, seed=seed, held_out=held_out)
    out = Path(out)
    started = time.perf_counter()
    _prepare_output(out)
    held = choose_held_out(seed, held_out)
    plan = _plan(config, held)
    rows: dict[str, list[tuple[str, list[str], SceneAttrs]]] = {split: [] for split in SPLITS}
    for split_index, split in enumerate(SPLITS):
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        width = max(5, len(str(len(plan[split]))))
        for index, attrs in enumerate(plan[split]):
            image_id = f"{split}_{index:0{width}d}"
            render_rng = np.random.default_rng([seed, split_index, index, 0])
            image = render_scene(attrs.colour, attrs.shape, attrs.size, attrs.position, render_rng, size)
            relative = f"images/{split}/{image_id}.png"
            _write_png(out / relative, image)
            wanted = TEST_CAPTIONS if split == "test" else 1
            captions = _distinct_captions(attrs, np.random.default_rng([seed, split_index, index, 1]), wanted)
            rows[split].append((relative, captions, attrs))
    for split in SPLITS:
        lines = ["image\tcaption"] + [f"{relative}\t{captions[0]}" for relative, captions, _ in rows[split]]
        _write_text(out / f"{split}.tsv", "\n".join(lines) + "\n")
    classes = _write_zero_shot(out, rows["test"])
    _write_json(out / "karpathy.json", _karpathy_document(rows))
    counts = {split: len(rows[split]) for split in SPLITS}
    _write_json(out / "world.json", _world_document(config, held, rows, classes))
    return WorldSummary(
        out=out,
        seed=seed,
        size=size,
        counts=counts,
        held_out=held,
        classes=len(classes),
        seconds=time.perf_counter() - started,
    )


# --- planning ---------------------------------------------------------------------------------


def _plan(config: WorldConfig, held: list[tuple[str, str]]) -> dict[str, list[SceneAttrs]]:
    """Attributes of every image: combinations cycle in shuffled rounds so all are covered evenly."""
    rng = np.random.default_rng([config.seed, 202])
    held_set = set(held)
    seen = [pair for pair in product(COLOURS, SHAPES) if pair not in held_set]
    counts = config.split_counts()
    plan = {}
    for split in SPLITS:
        pool = held if split == "test" else seen
        plan[split] = [
            SceneAttrs(
                colour, shape, SIZES[int(rng.integers(len(SIZES)))], POSITIONS[int(rng.integers(len(POSITIONS)))]
            )
            for colour, shape in _balanced(pool, counts[split], rng)
        ]
    return plan


def _balanced(pool: Sequence[tuple[str, str]], count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    chosen: list[tuple[str, str]] = []
    while len(chosen) < count:
        chosen.extend(pool[i] for i in rng.permutation(len(pool)))
    return chosen[:count]


# --- rendering --------------------------------------------------------------------------------


def _background(rng: np.random.Generator, side: int) -> tuple[np.ndarray, bool]:
    """A light grey-ish tone, plain, with a soft linear gradient, or (later) with light noise."""
    tone = rng.uniform(125.0, 200.0)
    base = np.full((side, side, 3), tone, dtype=np.float32) + rng.uniform(-8.0, 8.0, size=3).astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 1:
        theta, amplitude = rng.uniform(0.0, 2 * math.pi), rng.uniform(15.0, 40.0)
        ramp = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
        gradient = math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None]
        base = base + (amplitude * gradient)[..., None]
    return base, kind == 2


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, angle: float) -> None:
    if shape in ("circle", "ring"):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        if shape == "ring":
            inner = radius * 0.55
            draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
        return
    points = _outline(shape)
    cos, sin = math.cos(angle), math.sin(angle)
    draw.polygon([(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points], fill=255)


def _outline(shape: str) -> list[tuple[float, float]]:
    """The shape's polygon in unit coordinates (image y axis points down), centred on the origin."""
    if shape == "square":
        h = 0.75
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        return [(math.cos(a), math.sin(a) + 0.12) for a in (math.radians(d) for d in (-90, 30, 150))]
    if shape == "star":
        return [
            (
                (1.0 if k % 2 == 0 else 0.42) * math.cos(math.radians(-90 + 36 * k)),
                (1.0 if k % 2 == 0 else 0.42) * math.sin(math.radians(-90 + 36 * k)) + 0.05,
            )
            for k in range(10)
        ]
    if shape == "cross":
        w, r = 0.3, 0.92
        return [
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
            (-w, -r),
        ]
    if shape == "heart":
        points = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((x / 17.0, (-y - 2.6) / 17.0))
        return points
    raise ValueError(f"unknown shape {shape!r}")


def _check_value(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (expected one of {', '.join(allowed)})")


# --- captions ---------------------------------------------------------------------------------


def _word(rng: np.random.Generator, words: Sequence[str], canonical: float) -> str:
    if len(words) == 1 or rng.random() < canonical:
        return words[0]
    return words[1 + int(rng.integers(len(words) - 1))]


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _np(colour: str, shape: str, size: str | None) -> str:
    return " ".join(part for part in (size, colour, shape) if part)


def _tail(place: str | None) -> str:
    return f" {place}" if place else ""


def _form_plain(colour, shape, size, place):  # a large red circle on the left
    return _a(_np(colour, shape, size)) + _tail(place)


def _form_place_first(colour, shape, size, place):  # on the left, a large red circle
    return f"{place}, {_a(_np(colour, shape, size))}" if place else _a(_np(colour, shape, size))


def _form_there_is(colour, shape, size, place):  # there is a large red circle on the left
    return f"there is {_a(_np(colour, shape, size))}{_tail(place)}"


def _form_coloured(colour, shape, size, place):  # a big disc coloured red at the left side
    return f"{_a(_np('', shape, size))} coloured {colour}{_tail(place)}"


def _form_in_colour(colour, shape, size, place):  # a small square in blue at the top
    return f"{_a(_np('', shape, size))} in {colour}{_tail(place)}"


def _form_bare(colour, shape, size, place):  # small blue star at the top
    return _np(colour, shape, size) + _tail(place)


def _form_apposition(colour, shape, size, place):  # a star, small and blue, at the top
    if not size:
        return f"{_a(shape)} that is {colour}{_tail(place)}"
    return f"{_a(shape)}, {size} and {colour},{_tail(place)}" if place else f"{_a(shape)} that is {size} and {colour}"


def _form_picture(colour, shape, size, place):  # a picture of a small blue star in the middle
    return f"a picture of {_a(_np(colour, shape, size))}{_tail(place)}"


def _form_place_there_is(colour, shape, size, place):  # in the middle there is a small blue star
    return f"{place} there is {_a(_np(colour, shape, size))}" if place else f"there is {_a(_np(colour, shape, size))}"


def _form_drawn(colour, shape, size, place):  # a tiny yellow heart drawn near the top
    return f"{_a(_np(colour, shape, size))} drawn{_tail(place)} on a grey background"


_CAPTION_FORMS = (
    _form_plain,
    _form_place_first,
    _form_there_is,
    _form_coloured,
    _form_in_colour,
    _form_bare,
    _form_apposition,
    _form_picture,
    _form_place_there_is,
    _form_drawn,
)


def _distinct_captions(attrs: SceneAttrs, rng: np.random.Generator, count: int) -> list[str]:
    captions: list[str] = []
    for _ in range(count * 20):
        caption = caption_for(attrs, rng)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == count:
                break
    while len(captions) < count:  # the caption space is large; this is only a guard
        captions.append(caption_for(attrs, rng))
    return captions


# --- output -----------------------------------------------------------------------------------


def _prepare_output(out: Path) -> None:
    """Refuse a folder holding other files; clear images of an earlier world so none go stale."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir():
        foreign = sorted(
            entry.name for entry in out.iterdir() if entry.name not in OUTPUT_NAMES and not _is_temporary(entry.name)
        )
        if foreign:
            raise ValueError(f"{out}: folder holds files vl-synth did not write ({', '.join(foreign[:3])})")
        for name in ("images", "zero_shot"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for entry in out.iterdir():
            if _is_temporary(entry.name):
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary name and rename, so an interrupted run leaves no half file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_json(path: Path, document: dict) -> None:
    _write_text(path, json.dumps(document, indent=1) + "\n")


def _write_png(path: Path, image: Image.Image) -> None:
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    _write_bytes(path, buffer.getvalue())


def _write_zero_shot(out: Path, test_rows: list[tuple[str, list[str], SceneAttrs]]) -> list[str]:
    """Link the test images into class folders; ``classes.txt`` lists every combination."""
    root = out / "zero_shot"
    root.mkdir(parents=True, exist_ok=True)
    for relative, _, attrs in test_rows:
        folder = root / attrs.class_folder
        folder.mkdir(exist_ok=True)
        source, target = out / relative, folder / Path(relative).name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    classes = [class_folder(colour, shape) for colour, shape in all_classes()]
    _write_text(root / CLASS_LIST, "\n".join(classes) + "\n")
    return classes


def _tokens(caption: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", caption.lower())


def _karpathy_document(rows: dict[str, list[tuple[str, list[str], SceneAttrs]]]) -> dict:
    images, sentence_id = [], 0
    for split in SPLITS:
        for relative, captions, _ in rows[split]:
            image_id = len(images)
            sentences = []
            for caption in captions:
                sentences.append({"raw": caption, "tokens": _tokens(caption), "imgid": image_id, "sentid": sentence_id})
                sentence_id += 1
            images.append(
                {
                    "filename": relative,
                    "imgid": image_id,
                    "split": split,
                    "sentids": [s["sentid"] for s in sentences],
                    "sentences": sentences,
                }
            )
    return {"dataset": "vl-synth", "images": images}


def _world_document(config: WorldConfig, held, rows, classes: list[str]) -> dict:
    combos = {
        split: dict(sorted(Counter(attrs.class_folder for _, _, attrs in rows[split]).items())) for split in SPLITS
    }
    return {
        "generator": "vl-synth",
        "seed": config.seed,
        "size": config.size,
        "images": config.images,
        "colours": {name: list(COLOUR_RGB[name]) for name in COLOURS},
        "shapes": list(SHAPES),
        "sizes": list(SIZES),
        "positions": list(POSITIONS),
        "held_out": [list(pair) for pair in held],
        "counts": {split: len(rows[split]) for split in SPLITS},
        "combination_counts": combos,
        "zero_shot_classes": classes,
        "files": {
            "train": "train.tsv",
            "val": "val.tsv",
            "test": "test.tsv",
            "karpathy": "karpathy.json",
            "karpathy_image_root": ".",
            "zero_shot": "zero_shot",
        },
    }
