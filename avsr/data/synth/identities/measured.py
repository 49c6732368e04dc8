"""What dlib measures on an identity, kept on disk between processes.

Casting measures every candidate face (its recogniser descriptor, its lip-sync screen): seconds
each, minutes for a corpus, and the same again whenever the corpus is planned anew (a resume, a
check, another corpus with the same seed). The measurements depend only on the recipe, the
photographs and the renderer's code, so they are stored as JSON under
``$AVSR_CACHE_DIR/identities/`` (default ``~/.cache/avsr``), one file per key: a SHA-256 of the
recipe, of each photograph's bytes and of every source file of ``avsr.data.synth`` but the
``POLICY_FILES``, which choose or show faces and measure nothing (so a change of casting policy
reuses what was measured). Any change to them is another key; a file that does not parse, or
whose key does not match, is measured again. ``AVSR_CACHE_DIR=off`` turns the cache off.
The measurements themselves are here too, so that what they run is never in a policy file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from avsr.data.synth.identities.identity import Identity, identity_rig
from avsr.data.synth.identities.sources import Source
from avsr.data.synth.recognise import face_descriptor
from avsr.data.synth.verify import screen_appearance, screen_lip_sync
from avsr.media.constants import VIDEO_FPS
from avsr.parallel import one_blas_thread

SYNTH_PACKAGE = Path(__file__).resolve().parents[1]
POLICY_FILES = (
    "identities/cast.py",
    "identities/ahead.py",
    "preview.py",
)  # relative to SYNTH_PACKAGE: not in the code digest
NEUTRAL_SIZE = 256  # side of the neutral frame the descriptor is measured on
DESCRIPTOR, LIP_SYNC = "descriptor", "lip_sync_screen"  # what is measured (part of the cache key)


def cache_root() -> Path | None:
    """The cache folder, or None when ``AVSR_CACHE_DIR=off``."""
    setting = os.environ.get("AVSR_CACHE_DIR", "")
    if setting == "off":
        return None
    return Path(setting or Path.home() / ".cache" / "avsr") / "identities"


@lru_cache(maxsize=4)
def code_digest(package: Path = SYNTH_PACKAGE) -> str:
    """SHA-256 over the renderer's code: every ``.py`` and data file of ``package`` (``avsr.data.synth``)
    but the ``POLICY_FILES``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".txt")):
        name = path.relative_to(package).as_posix()
        if name in POLICY_FILES:
            continue
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=64)
def photo_digest(source: Source) -> str:
    return hashlib.sha256(source.file().read_bytes()).hexdigest()


def measurement_key(identity: Identity, what: str) -> str:
    parts = {
        "what": what,
        "recipe": identity.recipe(),
        "photos": [photo_digest(s) for s, _ in identity.sources],
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _on_one_blas_thread(measure: Callable[[], object]) -> object:
    with one_blas_thread():
        return measure()


_REMEMBERED: dict[tuple[Identity, str], object] = {}  # measured in another process of this run


def remember(identity: Identity, what: str, value: object) -> None:
    """Keep a measurement taken in a worker process (``ahead.Measurer``) for this process too,
    so that it is not taken again here when the cache is off."""
    _REMEMBERED[(identity, what)] = value


def known(identity: Identity, what: str) -> tuple[bool, object]:
    """(True, the value) when this measurement was taken before (in this run or in the cache),
    else (False, None)."""
    if (identity, what) in _REMEMBERED:
        return True, _REMEMBERED[(identity, what)]
    root = cache_root()
    if root is None:
        return False, None
    key = measurement_key(identity, what)
    try:
        stored = json.loads((root / f"{key}.json").read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == key and "value" in stored:
            return True, stored["value"]
    except (OSError, ValueError):
        pass
    return False, None


def cached_measurement(identity: Identity, what: str, measure: Callable[[], object]) -> object:
    """``measure()`` (a JSON value: a number, a list of numbers or None), read from the cache when
    this identity was measured before with the same photographs and code (measured on one BLAS
    thread, as rendering workers do)."""
    found, value = known(identity, what)
    if found:
        return value
    root = cache_root()
    if root is None:
        return _on_one_blas_thread(measure)
    key = measurement_key(identity, what)
    path = root / f"{key}.json"
    value = _on_one_blas_thread(measure)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        root.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"key": key, "value": value}), encoding="utf-8")
        temporary.replace(path)
    except OSError:  # a read-only or full cache only costs the time
        temporary.unlink(missing_ok=True)
    return value


def neutral_frame(identity: Identity, size: int = NEUTRAL_SIZE) -> np.ndarray:
    """(size, size, 3) uint8: the identity speaking nothing, framed as a speaker (no colour
    change, no mirror, its own background)."""
    from avsr.data.synth.face import Appearance, TalkingFace

    return TalkingFace(size, identity_rig(identity)).render(np.zeros((1, 3)), Appearance(), VIDEO_FPS)[0]


@lru_cache(maxsize=256)
def identity_descriptor(identity: Identity) -> np.ndarray | None:
    """dlib's 128-D descriptor of the identity's neutral frame (None: no face found); measured
    once (``cached_measurement``)."""

    def measure() -> list[float] | None:
        frame = neutral_frame(identity)
        found = face_descriptor(frame, upsample=0)
        found = found if found is not None else face_descriptor(frame, upsample=1)
        return None if found is None else [float(x) for x in found]

    value = cached_measurement(identity, DESCRIPTOR, measure)
    return None if value is None else np.asarray(value, np.float64)


@lru_cache(maxsize=256)
def identity_lip_sync(identity: Identity) -> float:
    """``verify.screen_lip_sync`` of the identity's face, measured once."""
    return float(cached_measurement(identity, LIP_SYNC, lambda: screen_lip_sync(identity_rig(identity))))


def appearance_lip_sync(identity: Identity, appearance, size: int) -> float:
    """``verify.screen_appearance``: the identity's lip sync as one speaker shows it (its
    ``face.Appearance`` at frame ``size``), measured once."""
    return float(
        cached_measurement(
            identity,
            appearance_key(appearance, size),
            lambda: screen_appearance(identity_rig(identity), appearance, size),
        )
    )


def appearance_key(appearance, size: int) -> str:
    """What ``appearance_lip_sync`` measures, as a cache entry's ``what``."""
    return "appearance_screen:" + json.dumps({"size": size, "appearance": asdict(appearance)}, sort_keys=True)
