"""Image-caption pairs from a TSV/CSV table or from WebDataset tar shards.

Both formats are how caption corpora (CC3M, LAION subsets, our synthetic world) are shipped;
reading them into one small record type lets the rest of the package ignore the format.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from PIL import Image

from vision_language.data.errors import DataError, DataWarning

IMAGE_COLUMNS = ("image", "image_path", "filepath", "filename")
CAPTION_COLUMNS = ("caption", "text", "caption_text")
ID_COLUMN = "id"
TABLE_SUFFIXES = (".tsv", ".csv")
SHARD_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SHARD_CAPTION_FIELDS = ("caption", "text")


@dataclass(frozen=True)
class ImageTextPair:
    """One image and one caption; the image is either a file or bytes read from a shard."""

    key: str
    caption: str
    image_path: Path | None = None
    image_bytes: bytes | None = None


def read_pairs(source: str | Path) -> list[ImageTextPair]:
    """Read every usable pair from a table file, a tar shard, a folder of shards or a brace pattern.

    Rows or samples without a caption or an image are skipped with one :class:`DataWarning`
    that counts them; a source with no usable pair, or with a key seen twice, is a DataError.
    Without an ``id`` column a table's key is the image path (``path#2``, ``#3`` ... for further
    captions of the same image).
    """
    text = str(source)
    if "{" in text and not Path(text).exists():
        shards = [Path(name) for name in expand_braces(text)]
        for shard in shards:
            if not shard.is_file():
                raise DataError(f"{shard}: shard not found (from pattern {text})")
        return _read_shards(shards, text)
    path = Path(source)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file())
        if not shards:
            raise DataError(f"{path}: folder holds no .tar shards")
        return _read_shards(shards, str(path))
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _read_table(path)
    if suffix == ".tar":
        return _read_shards([path], str(path))
    raise DataError(f"{path}: unknown pair format (expected .tsv, .csv, .tar, a folder of shards or a brace pattern)")


def load_image(pair: ImageTextPair) -> Image.Image:
    """Decode the pair's image as RGB, turning any decoding failure into a DataError."""
    if pair.image_bytes is not None:
        where, stream = pair.key, io.BytesIO(pair.image_bytes)
    elif pair.image_path is not None:
        where, stream = str(pair.image_path), pair.image_path
        if not pair.image_path.is_file():
            raise DataError(f"{where}: image file not found")
    else:
        raise DataError(f"{pair.key}: pair has neither an image path nor image bytes")
    try:
        with Image.open(stream) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{where}: cannot read image ({_first_line(error)})") from error


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a..b}`` numeric ranges (zero padding kept) and ``{x,y}`` lists, left to right.

    This is the shell/WebDataset shard notation, e.g. ``shards/{00000..00003}.tar``.
    """
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        if "{" in pattern or "}" in pattern:
            raise DataError(f"{pattern}: unbalanced braces in shard pattern")
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end() :]
    options = _brace_options(body, pattern)
    return [head + option + rest for option, rest in product(options, expand_braces(tail))]


def _brace_options(body: str, pattern: str) -> list[str]:
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        start, stop = int(first), int(last)
        if stop < start:
            raise DataError(f"{pattern}: brace range {{{body}}} runs backwards")
        width = len(first) if first.startswith("0") else 0
        return [str(number).zfill(width) for number in range(start, stop + 1)]
    if "," in body:
        return body.split(",")
    raise DataError(f"{pattern}: cannot expand {{{body}}} (expected {{first..last}} or {{a,b,...}})")


def _read_table(path: Path) -> list[ImageTextPair]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            # TSV captions may hold quote characters literally, so only CSV uses quoting.
            quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty (expected a header line)")
            columns = [name.strip().lower() for name in header]
            image_col = _pick_column(columns, IMAGE_COLUMNS, path, "image")
            caption_col = _pick_column(columns, CAPTION_COLUMNS, path, "caption")
            id_col = columns.index(ID_COLUMN) if ID_COLUMN in columns else None
            pairs: list[ImageTextPair] = []
            seen: dict[str, int] = {}
            repeats: dict[str, int] = {}
            skipped = 0
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                line = reader.line_num
                image_value = _cell(row, image_col)
                caption = _cell(row, caption_col)
                if not image_value or not caption:
                    skipped += 1
                    continue
                key = _cell(row, id_col) if id_col is not None else ""
                if not key:  # several captions of one image (COCO-style rows): image path, then #2, #3 ...
                    repeats[image_value] = repeats.get(image_value, 0) + 1
                    key = image_value if repeats[image_value] == 1 else f"{image_value}#{repeats[image_value]}"
                if key in seen:
                    raise DataError(f"{path}: line {line}: duplicate key {key!r} (first on line {seen[key]})")
                seen[key] = line
                image_path = Path(image_value)
                if not image_path.is_absolute():
                    image_path = path.parent / image_path
                pairs.append(ImageTextPair(key=key, caption=caption, image_path=image_path))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except csv.Error as error:
        raise DataError(f"{path}: malformed {path.suffix.lstrip('.').upper()} ({error})") from error
    return _finish(pairs, skipped, str(path), "rows")


def _pick_column(columns: list[str], names: tuple[str, ...], path: Path, what: str) -> int:
    for name in names:
        if name in columns:
            return columns.index(name)
    raise DataError(
        f"{path}: line 1: no {what} column (expected one of {', '.join(names)}; header has {', '.join(columns)})"
    )


def _cell(row: list[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _read_shards(shards: list[Path], label: str) -> list[ImageTextPair]:
    pairs: list[ImageTextPair] = []
    origin: dict[str, Path] = {}
    skipped = 0
    for shard in shards:
        samples = _read_shard(shard)
        for key, members in samples.items():
            if key in origin:
                raise DataError(f"{shard}: {key}: duplicate sample key (also in {origin[key]})")
            origin[key] = shard
            pair = _sample_to_pair(shard, key, members)
            if pair is None:
                skipped += 1
            else:
                pairs.append(pair)
    return _finish(pairs, skipped, label, "samples")


def _read_shard(shard: Path) -> dict[str, dict[str, bytes]]:
    """Group a shard's members by WebDataset key: the member path up to the first dot of its name."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(shard, "r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                folder, _, name = member.name.rpartition("/")
                if name.startswith(".") or "." not in name:
                    continue
                stem, extension = name.split(".", 1)
                key = f"{folder}/{stem}" if folder else stem
                extension = extension.lower()
                parts = samples.setdefault(key, {})
                if extension in parts:
                    raise DataError(f"{shard}: {member.name}: sample {key!r} has two .{extension} members")
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                parts[extension] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{shard}: unreadable tar shard ({_first_line(error)})") from error
    return samples


def _sample_to_pair(shard: Path, key: str, members: dict[str, bytes]) -> ImageTextPair | None:
    image = next((members[ext] for ext in SHARD_IMAGE_EXTENSIONS if ext in members), None)
    caption = ""
    if "txt" in members:
        caption = _decode(members["txt"], shard, f"{key}.txt").strip()
    elif "json" in members:
        caption = _json_caption(members["json"], shard, f"{key}.json")
    if image is None or not caption:
        return None
    return ImageTextPair(key=key, caption=caption, image_bytes=image)


def _json_caption(raw: bytes, shard: Path, member: str) -> str:
    try:
        record = json.loads(_decode(raw, shard, member))
    except json.JSONDecodeError as error:
        raise DataError(f"{shard}: {member}: invalid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(record, dict):
        raise DataError(f"{shard}: {member}: expected a JSON object")
    for field in SHARD_CAPTION_FIELDS:
        value = record.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _decode(raw: bytes, shard: Path, member: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{shard}: {member}: not UTF-8 text") from error


def _finish(pairs: list[ImageTextPair], skipped: int, label: str, unit: str) -> list[ImageTextPair]:
    if not pairs:
        raise DataError(f"{label}: no usable image-caption pairs ({skipped} {unit} skipped)")
    if skipped:
        warnings.warn(f"{label}: skipped {skipped} {unit} with an empty caption or no image", DataWarning, stacklevel=3)
    return pairs


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
