"""Landmarks computed elsewhere: auto_avsr's per-video pickles (LRS2, LRS3, VoxCeleb2) and our own files.

auto_avsr releases one pickle per video, at the video's path relative to the corpus root with
``.mp4`` replaced by ``.pkl``, holding a list with one (68, 2) array or None per frame; its
``preparation/preprocess_lrs2lrs3.py`` (lines 174-178) opens it with a plain ``pickle.load``.
A pickle can run any code while loading, and these files come from a download, so here they go
through :class:`SafeUnpickler`, which rebuilds numpy arrays and nothing else.

Our own files are ``.npy`` (a (T, 68, 2) float array, NaN in frames without a face) or ``.npz``
(the same array under the key ``landmarks``), loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from avsr.face.errors import LandmarksFileError
from avsr.face.landmarker import VideoLandmarker
from avsr.face.temporal import NUM_POINTS, as_landmark_array

SUFFIXES = (".pkl", ".npy", ".npz")
NPZ_KEY = "landmarks"

# What pickling numpy arrays, dtypes and scalars refers to (numpy 1 wrote numpy.core, numpy 2
# writes numpy._core; protocol 5 rebuilds arrays with _frombuffer; protocol 2 stores bytes as
# latin-1 text passed through _codecs.encode). Nothing here can run code or touch files.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than numpy array reconstruction."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and scalars inside plain lists, tuples, dicts and None.

    Any other global (``os.system``, ``builtins.eval``, a class with a malicious ``__reduce__``...)
    is refused before it is looked up, so loading a hostile file raises instead of running it.
    """

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"refused to load {module}.{name} (only numpy arrays are allowed)")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # avoid numpy 2's shim warning
        return super().find_class(module, name)


def safe_pickle_loads(data: bytes) -> object:
    """Unpickle bytes with :class:`SafeUnpickler` (latin-1 for Python 2 pickles of numpy arrays)."""
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_landmarks_file(path: str | os.PathLike[str]) -> list[np.ndarray | None]:
    """One (68, 2) float32 array or None per frame, from a ``.pkl``, ``.npy`` or ``.npz`` file.

    Raises :class:`LandmarksFileError` (one line naming the file) when the file is missing,
    unreadable, refused as unsafe, or not a per-frame list of 68-point landmarks.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".pkl", ".pickle"):
            content = safe_pickle_loads(path.read_bytes())
        elif suffix == ".npy":
            content = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if NPZ_KEY not in archive.files:
                    raise LandmarksFileError(path, f"no '{NPZ_KEY}' array (has: {', '.join(archive.files) or 'nothing'})")
                content = archive[NPZ_KEY]
        else:
            raise LandmarksFileError(path, f"unknown landmarks file type '{suffix}' (expected .pkl, .npy or .npz)")
    except LandmarksFileError:
        raise
    except FileNotFoundError:
        raise LandmarksFileError(path, "file not found") from None
    except UnsafePickleError as exc:
        raise LandmarksFileError(path, f"unsafe pickle: {exc}") from None
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError, zipfile.BadZipFile, AttributeError, ImportError, IndexError, KeyError) as exc:
        raise LandmarksFileError(path, f"cannot read ({type(exc).__name__}: {exc})") from None
    return _as_frame_list(path, content)


def _as_frame_list(path: Path, content: object) -> list[np.ndarray | None]:
    frames: Sequence[object]
    if isinstance(content, np.ndarray) and content.dtype != object:
        if content.ndim != 3:
            raise LandmarksFileError(path, f"expected a (T, {NUM_POINTS}, 2) array, found shape {content.shape}")
        frames = list(content)
    elif isinstance(content, (list, tuple)) or (isinstance(content, np.ndarray) and content.ndim == 1):
        frames = list(content)
    else:
        raise LandmarksFileError(path, f"expected a list of per-frame landmarks, found {type(content).__name__}")
    out: list[np.ndarray | None] = []
    for index, frame in enumerate(frames):
        if frame is None:
            out.append(None)
            continue
        try:
            points = np.asarray(frame, dtype=np.float64)
        except (TypeError, ValueError):
            raise LandmarksFileError(path, f"frame {index}: not numeric landmarks ({type(frame).__name__})") from None
        if points.shape != (NUM_POINTS, 2):
            raise LandmarksFileError(path, f"frame {index}: expected ({NUM_POINTS}, 2) landmarks, found shape {points.shape}")
        out.append(points.astype(np.float32) if np.isfinite(points).all() else None)
    return out


def save_landmarks(path: str | os.PathLike[str], landmarks: Sequence[np.ndarray | None] | np.ndarray) -> Path:
    """Write landmarks as ``.npy`` (T, 68, 2) float32 with NaN for frames without a face.

    The file is written beside its final name and renamed, so a killed job leaves no half file.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: landmarks are saved as .npy")
    array, _ = as_landmark_array(landmarks)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.save(handle, array.astype(np.float32), allow_pickle=False)
    os.replace(partial, path)
    return path


class StoredLandmarks:
    """A :class:`VideoLandmarker` that returns landmarks already at hand (the frames are not looked at)."""

    def __init__(self, landmarks: Sequence[np.ndarray | None]) -> None:
        self._landmarks = list(landmarks)

    def landmarks(self, frames: Iterable[np.ndarray] | None = None) -> list[np.ndarray | None]:
        return list(self._landmarks)


class PrecomputedLandmarks:
    """Per-video landmark files under ``root``, mirroring the corpus layout.

    ``landmarks_for("main/5535415699068794046/00001")`` reads ``root/main/5535415699068794046/00001``
    + ``.pkl`` (auto_avsr's release), ``.npy`` or ``.npz``, whichever exists first; a trailing video
    suffix on the id (``.mp4``) is ignored.
    """

    def __init__(self, root: str | os.PathLike[str], suffixes: Sequence[str] = SUFFIXES) -> None:
        self.root = Path(root)
        self.suffixes = tuple(suffixes)

    def path_for(self, relative_id: str) -> Path | None:
        stem = relative_id.strip("/")
        if Path(stem).suffix.lower() in (".mp4", ".avi", ".mkv", ".mov", ".webm"):
            stem = stem[: -len(Path(stem).suffix)]
        for suffix in self.suffixes:
            candidate = self.root / (stem + suffix)
            if candidate.is_file():
                return candidate
        return None

    def landmarks_for(self, relative_id: str) -> list[np.ndarray | None] | None:
        """The video's landmarks, or None when it has no file (a bad file raises LandmarksFileError)."""
        path = self.path_for(relative_id)
        return None if path is None else load_landmarks_file(path)

    def for_video(self, relative_id: str, fallback: VideoLandmarker | None = None) -> VideoLandmarker:
        """A VideoLandmarker for one video: its stored landmarks, else ``fallback`` (e.g. dlib).

        Without a file and without a fallback this raises :class:`LandmarksFileError`.
        """
        stored = self.landmarks_for(relative_id)
        if stored is not None:
            return StoredLandmarks(stored)
        if fallback is None:
            raise LandmarksFileError(self.root / relative_id, "no landmarks file (.pkl, .npy or .npz)")
        return fallback
