"""Landmarks computed elsewhere: auto_avsr's per-video pickles (LRS2, LRS3, VoxCeleb2) and our own files.

auto_avsr releases one pickle per video, at the video's path relative to the corpus root with
``.mp4`` replaced by ``.pkl``, holding a list with one (68, 2) array or None per frame; its
``preparation/preprocess_lrs2lrs3.py`` (lines 174-178) opens it with a plain ``pickle.load``.
A pickle can run any code while loading, and these files come from a download, so here they go
through :class:`SafeUnpickler`, which rebuilds numpy arrays and nothing else.

Our own files are ``.npy`` (a (T, 68, 2) float array, NaN in frames without a face) or ``.npz``
(the same array under the key ``landmarks``), loaded with ``allow_pickle=False``.

What a file may allocate is bounded before anything is allocated: a 100-byte pickle or ``.npy``
header can ask numpy for terabytes, and the MemoryError (or the kernel's OOM killer) would end a
whole batch job. Array shapes and dtypes in a pickle, and the header of an ``.npy``, are checked
against :data:`MAX_ARRAY_BYTES` (all arrays of a file together), the frame count against
:data:`MAX_FRAMES` and the file against :data:`MAX_FILE_BYTES`; a file over them is one refused item.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from avsr.face.errors import LandmarksFileError
from avsr.face.landmarker import VideoLandmarker
from avsr.face.temporal import NUM_POINTS, as_landmark_array
from avsr.media.paths import OutsideRootError, inside

SUFFIXES = (".pkl", ".npy", ".npz")
NPZ_KEY = "landmarks"
MAX_FRAMES = 25 * 3600 * 4  # four hours at 25 fps
MAX_ARRAY_BYTES = MAX_FRAMES * NUM_POINTS * 2 * 8  # every frame as float64: ~374 MiB
MAX_FILE_BYTES = 2 * MAX_ARRAY_BYTES

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


class TooLargeError(ValueError):
    """A landmarks file asks for more memory than a landmarks file may take."""


class _Budget:
    """The bytes a file's arrays may still take; each array takes its share before it exists."""

    def __init__(self, limit: int = MAX_ARRAY_BYTES) -> None:
        self.limit = self.left = limit

    def take(self, shape: object, dtype: object) -> int:
        try:
            dims = [int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,))]
            itemsize = np.dtype(dtype).itemsize
        except (TypeError, ValueError, OverflowError) as exc:
            raise TooLargeError(f"unusable array shape or dtype ({exc})") from None
        if any(n < 0 for n in dims):
            raise TooLargeError(f"negative array shape {tuple(dims)}")
        nbytes = math.prod(dims) * max(itemsize, 1)
        if nbytes > self.left:
            raise TooLargeError(
                f"asks for an array of shape {tuple(dims)} ({nbytes:,} bytes); "
                f"a landmarks file may hold {self.limit:,} bytes of arrays"
            )
        self.left -= nbytes
        return nbytes


class _CheckedArray(np.ndarray):
    """What pickled arrays are rebuilt as: its ``__setstate__`` (pickle's BUILD, which gives the
    array its real shape and dtype) takes the bytes from the file's budget first."""

    _budget: _Budget

    def __setstate__(self, state):  # noqa: ANN001, ANN204 - numpy's signature
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise TooLargeError("malformed array state")
        shape, dtype = state[-4], state[-3]
        self._budget.take(shape, dtype)
        super().__setstate__(state)


class SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and scalars inside plain lists, tuples, dicts and None.

    Any other global (``os.system``, ``builtins.eval``, a class with a malicious ``__reduce__``...)
    is refused before it is looked up, so loading a hostile file raises instead of running it.
    Array rebuilding goes through checked versions of numpy's functions that charge each array to
    a per-file :class:`_Budget` before it is allocated (:class:`TooLargeError` past it).
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - pickle's signature
        super().__init__(*args, **kwargs)
        self.budget = _Budget()
        self._checked = {"_reconstruct": self._reconstruct, "_frombuffer": self._frombuffer, "scalar": self._scalar}

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"refused to load {module}.{name} (only numpy arrays are allowed)")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # avoid numpy 2's shim warning
        found = super().find_class(module, name)
        checked = self._checked.get(name) if module.startswith("numpy.") else None
        return found if checked is None else (lambda *args: checked(found, *args))

    def _reconstruct(self, real, cls, shape, dtype):  # noqa: ANN001, ANN202
        if cls is not np.ndarray:
            raise UnsafePickleError(
                f"refused to rebuild {getattr(cls, '__name__', cls)} (only numpy arrays are allowed)"
            )
        self.budget.take(shape, dtype if not isinstance(dtype, bytes) else dtype.decode("latin1"))
        array = real(_CheckedArray, shape, dtype)
        array._budget = self.budget
        return array

    def _frombuffer(self, real, buffer, dtype, shape, order):  # noqa: ANN001, ANN202
        self.budget.take(shape, dtype)
        return real(buffer, dtype, shape, order)

    def _scalar(self, real, dtype, *args):  # noqa: ANN001, ANN002, ANN202
        self.budget.take((), dtype)
        return real(dtype, *args)


def safe_pickle_loads(data: bytes) -> object:
    """Unpickle bytes with :class:`SafeUnpickler` (latin-1 for Python 2 pickles of numpy arrays)."""
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(path: Path, handle: io.IOBase, size: int) -> np.ndarray:
    """An ``.npy`` array from ``handle`` (``size`` bytes), its header checked before allocating."""
    version = np.lib.format.read_magic(handle)
    read_header = _NPY_HEADERS.get(version)
    if read_header is None:
        raise LandmarksFileError(path, f".npy format version {version[0]}.{version[1]} is not supported (1.0, 2.0)")
    shape, _, dtype = read_header(handle)
    if dtype.hasobject:
        raise LandmarksFileError(path, "holds Python objects, not numbers (refused: loading them would unpickle)")
    nbytes = _Budget().take(shape, dtype)
    if nbytes > size - handle.tell():
        raise LandmarksFileError(
            path, f"truncated (the header promises {nbytes:,} bytes of data, {size - handle.tell():,} follow)"
        )
    handle.seek(0)
    return np.lib.format.read_array(handle, allow_pickle=False)


def _read_npz(path: Path) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        member = f"{NPZ_KEY}.npy"
        if member not in archive.namelist():
            names = [name.removesuffix(".npy") for name in archive.namelist()]
            raise LandmarksFileError(path, f"no '{NPZ_KEY}' array (has: {', '.join(names) or 'nothing'})")
        with archive.open(member) as handle:
            return _read_npy(path, handle, archive.getinfo(member).file_size)


def load_landmarks_file(path: str | os.PathLike[str]) -> list[np.ndarray | None]:
    """One (68, 2) float32 array or None per frame, from a ``.pkl``, ``.npy`` or ``.npz`` file.

    Raises :class:`LandmarksFileError` (one line naming the file) when the file is missing,
    unreadable, refused as unsafe or too large, or not a per-frame list of 68-point landmarks.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix not in (".pkl", ".pickle", ".npy", ".npz"):
            raise LandmarksFileError(path, f"unknown landmarks file type '{suffix}' (expected .pkl, .npy or .npz)")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TooLargeError(f"{size:,} bytes; a landmarks file may have {MAX_FILE_BYTES:,}")
        if suffix == ".npz":
            content = _read_npz(path)
        else:
            with open(path, "rb") as handle:
                content = _read_npy(path, handle, size) if suffix == ".npy" else safe_pickle_loads(handle.read())
    except LandmarksFileError:
        raise
    except FileNotFoundError:
        raise LandmarksFileError(path, "file not found") from None
    except UnsafePickleError as exc:
        raise LandmarksFileError(path, f"unsafe pickle: {exc}") from None
    except TooLargeError as exc:
        raise LandmarksFileError(path, f"too large: {exc}") from None
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        OverflowError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
    ) as exc:
        raise LandmarksFileError(path, f"cannot read ({type(exc).__name__}: {exc})") from None
    return _as_frame_list(path, content)


def _is_point(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.shape == (2,)
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float, np.generic)) for v in value)
    )


def _frame_points(path: Path, index: int, frame: object) -> np.ndarray:
    """One frame as (68, 2) float64; its structure is checked before numpy copies it (a list of
    68 references to one huge list would otherwise become a huge array)."""
    shape = getattr(frame, "shape", None)
    if shape is None and isinstance(frame, (list, tuple)):
        shape = (len(frame), 2) if len(frame) == NUM_POINTS and all(_is_point(p) for p in frame) else (len(frame), "?")
    if shape != (NUM_POINTS, 2):
        found = f"shape {shape}" if shape is not None else type(frame).__name__
        raise LandmarksFileError(path, f"frame {index}: expected ({NUM_POINTS}, 2) landmarks, found {found}")
    try:
        return np.asarray(frame, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise LandmarksFileError(path, f"frame {index}: not numeric landmarks ({type(frame).__name__})") from None


def _as_frame_list(path: Path, content: object) -> list[np.ndarray | None]:
    frames: Sequence[object]
    if isinstance(content, np.ndarray) and content.dtype != object:
        if content.ndim != 3:
            raise LandmarksFileError(path, f"expected a (T, {NUM_POINTS}, 2) array, found shape {content.shape}")
        frames = content
    elif isinstance(content, (list, tuple)) or (isinstance(content, np.ndarray) and content.ndim == 1):
        frames = content
    else:
        raise LandmarksFileError(path, f"expected a list of per-frame landmarks, found {type(content).__name__}")
    if len(frames) > MAX_FRAMES:
        raise LandmarksFileError(path, f"too large: {len(frames):,} frames; a landmarks file may have {MAX_FRAMES:,}")
    out: list[np.ndarray | None] = []
    for index, frame in enumerate(frames):
        if frame is None:
            out.append(None)
            continue
        points = _frame_points(path, index, frame)
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
        """The id's landmarks file, or None when it has none. An id (or a file, through a symlink)
        leading outside ``root`` raises :class:`LandmarksFileError`: ids come from corpus lists."""
        stem = relative_id.strip("/") if not os.path.isabs(relative_id) else relative_id
        if Path(stem).suffix.lower() in (".mp4", ".avi", ".mkv", ".mov", ".webm"):
            stem = stem[: -len(Path(stem).suffix)]
        for suffix in self.suffixes:
            try:
                candidate = inside(self.root, stem + suffix)
            except OutsideRootError as error:
                raise LandmarksFileError(error.path, error.problem) from None
            if candidate.is_file():
                return self.root / (stem + suffix)
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
