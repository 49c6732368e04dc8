"""Saving and loading tokenizers, with checksums so a model never decodes with the wrong one.

A tokenizer folder holds its files (units.txt, and spm.model for sentencepiece) and
tokenizer.json: kind, vocabulary size, special ids, normaliser, the SHA-256 of each file and the
tokenizer's fingerprint. Loading re-checks all of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from avsr.data.text import TextNormalizer
from avsr.data.tokenizers.base import (
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_FILE,
    UNITS_FILE,
    Tokenizer,
    TokenizerError,
    parse_units,
    sha256_hex,
)
from avsr.data.tokenizers.char import CharTokenizer
from avsr.data.tokenizers.spm import MODEL_FILE, SentencePieceTokenizer
from avsr.media.paths import OutsideRootError, inside

_CHECKED_FIELDS = ("kind", "vocab_size", "blank_id", "pad_id", "unk_id", "sos_id", "eos_id")


def save_tokenizer(tokenizer: Tokenizer, out_dir: Path) -> Path:
    """Write `tokenizer` into `out_dir` (created if needed); returns the tokenizer.json path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata_path = out_dir / METADATA_FILE
    metadata_path.unlink(missing_ok=True)  # no stale metadata may vouch for half-written files
    for name, data in tokenizer.files().items():
        _write_atomic(out_dir / name, data)
    text = json.dumps(tokenizer.metadata(), indent=2, ensure_ascii=False) + "\n"
    _write_atomic(metadata_path, text.encode("utf-8"))
    return metadata_path


def load_tokenizer(
    path: Path | str, expected_fingerprint: str | None = None, *, recorded_in: Path | str | None = None
) -> Tokenizer:
    """Load a tokenizer folder (or its tokenizer.json), verifying every checksum.

    The files tokenizer.json lists must lie in the folder (a symlink leading out is refused). With
    `expected_fingerprint` (what a model config recorded; `recorded_in` names that file for the
    message), a different tokenizer is refused. Every failure is a `TokenizerError` with a one-line
    message naming the file.
    """
    path = Path(path)
    directory = path.parent if path.name == METADATA_FILE and path.is_file() else path
    metadata_path = directory / METADATA_FILE
    metadata = _read_metadata(metadata_path)
    files: dict[str, bytes] = {}
    for name, recorded in metadata["files"].items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise TokenizerError(f"{metadata_path}: bad file name {name!r} in 'files'")
        try:
            data = inside(directory, name).read_bytes()
        except OutsideRootError as e:
            raise TokenizerError(f"{e.path}: {e.problem} (tokenizer files must be in the tokenizer folder)") from None
        except OSError as e:
            raise TokenizerError(f"{directory / name}: cannot read tokenizer file ({e.strerror or e})") from None
        actual = sha256_hex(data)
        if actual != recorded:
            raise TokenizerError(
                f"{directory / name}: checksum mismatch (tokenizer.json records sha256 {str(recorded)[:16]}..., "
                f"the file has {actual[:16]}...): it was changed or replaced after the tokenizer was saved"
            )
        files[name] = data
    try:
        normalizer = TextNormalizer.from_dict(metadata["normalizer"])
    except (TypeError, ValueError) as e:
        raise TokenizerError(f"{metadata_path}: bad 'normalizer': {e}") from None
    tokenizer = _build(metadata["kind"], files, normalizer, metadata_path)
    if tokenizer.fingerprint != metadata.get("fingerprint"):
        raise TokenizerError(
            f"{metadata_path}: fingerprint mismatch (recorded {str(metadata.get('fingerprint'))[:16]}..., "
            f"content gives {tokenizer.fingerprint[:16]}...): tokenizer.json was edited"
        )
    for field in _CHECKED_FIELDS:
        if field in metadata and metadata[field] != getattr(tokenizer, field):
            raise TokenizerError(
                f"{metadata_path}: {field} is {metadata[field]!r} but the files give {getattr(tokenizer, field)!r}"
            )
    if expected_fingerprint is not None and tokenizer.fingerprint != expected_fingerprint:
        where = f"the one {recorded_in} records" if recorded_in is not None else "the expected"
        raise TokenizerError(
            f"{directory}: tokenizer fingerprint {tokenizer.fingerprint[:16]}... differs from {where} "
            f"{expected_fingerprint[:16]}... (the model was trained with another tokenizer)"
        )
    return tokenizer


def _read_metadata(metadata_path: Path) -> dict[str, Any]:
    if not metadata_path.is_file():
        raise TokenizerError(f"{metadata_path.parent}: no {METADATA_FILE} (not a tokenizer folder written by avsr)")
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{metadata_path}: unreadable ({str(e).splitlines()[0]})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise TokenizerError(f"{metadata_path}: not an avsr tokenizer file (format is not {FORMAT_NAME!r})")
    if metadata.get("version") != FORMAT_VERSION:
        version = metadata.get("version")
        raise TokenizerError(f"{metadata_path}: format version {version!r}; this avsr reads {FORMAT_VERSION}")
    for key, kind in (("kind", str), ("files", dict), ("normalizer", dict)):
        if not isinstance(metadata.get(key), kind):
            raise TokenizerError(f"{metadata_path}: missing or malformed {key!r}")
    return metadata


def _build(kind: str, files: dict[str, bytes], normalizer: TextNormalizer, metadata_path: Path) -> Tokenizer:
    directory = metadata_path.parent
    needed = {"char": (UNITS_FILE,), "sentencepiece": (MODEL_FILE, UNITS_FILE)}.get(kind)
    if needed is None:
        raise TokenizerError(f"{metadata_path}: unknown tokenizer kind {kind!r} (known: char, sentencepiece)")
    for name in needed:
        if name not in files:
            raise TokenizerError(f"{metadata_path}: {name} is not listed in 'files'")
    units = parse_units(files[UNITS_FILE], directory / UNITS_FILE)
    if kind == "char":
        return CharTokenizer(units, normalizer)
    return SentencePieceTokenizer(files[MODEL_FILE], units, normalizer, source=directory / MODEL_FILE)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
