"""What dlib measured on an identity, kept on disk between processes.

Casting measures every candidate face (its recogniser descriptor, its lip-sync screen): seconds
each, minutes for a corpus, and the same again whenever the corpus is planned anew (a resume, a
check, another corpus with the same seed). The measurements depend only on the recipe, the
photographs and the renderer's code, so they are stored as JSON under
``$AVSR_CACHE_DIR/identities/`` (default ``~/.cache/avsr``), one file per key: a SHA-256 of the
recipe, of each photograph's bytes and of every source file of ``avsr.data.synth``. Any change to
them is another key; a file that does not parse, or whose key does not match, is measured again.
``AVSR_CACHE_DIR=off`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from avsr.data.synth.identities.identity import Identity
from avsr.data.synth.identities.sources import Source

SYNTH_PACKAGE = Path(__file__).resolve().parents[1]


def cache_root() -> Path | None:
    """The cache folder, or None when ``AVSR_CACHE_DIR=off``."""
    setting = os.environ.get("AVSR_CACHE_DIR", "")
    if setting == "off":
        return None
    return Path(setting or Path.home() / ".cache" / "avsr") / "identities"


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the renderer's code (every ``.py`` and data file of ``avsr.data.synth``)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in SYNTH_PACKAGE.rglob("*") if p.is_file() and p.suffix in (".py", ".txt")):
        digest.update(str(path.relative_to(SYNTH_PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=64)
def photo_digest(source: Source) -> str:
    return hashlib.sha256(source.file().read_bytes()).hexdigest()


def measurement_key(identity: Identity, what: str) -> str:
    parts = {"what": what, "recipe": identity.recipe(), "photos": [photo_digest(s) for s, _ in identity.sources], "code": code_digest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_measurement(identity: Identity, what: str, measure: Callable[[], object]) -> object:
    """``measure()`` (a JSON value: a number, a list of numbers or None), read from the cache when
    this identity was measured before with the same photographs and code."""
    root = cache_root()
    if root is None:
        return measure()
    key = measurement_key(identity, what)
    path = root / f"{key}.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == key and "value" in stored:
            return stored["value"]
    except (OSError, ValueError):
        pass
    value = measure()
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        root.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"key": key, "value": value}), encoding="utf-8")
        temporary.replace(path)
    except OSError:  # a read-only or full cache only costs the time
        temporary.unlink(missing_ok=True)
    return value
