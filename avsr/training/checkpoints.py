"""Training checkpoints that never run code from a file and survive a damaged step.

fairseq2 0.8.1's checkpoint manager loads the trainer, optimizer and data-reader state of a run
with ``torch.load(weights_only=False)`` (a pickle planted in ``checkpoints/step_N`` runs its code
on resume) and writes them with pickle protocol 5, which torch's weights-only unpickler cannot
read. `secure_checkpoints`, called by every recipe (AVSR, the front-end tasks, vl-train) before
its model is built, gives the run's checkpoint manager a loader and a dumper that do better:

* every checkpoint file is written with pickle protocol 2 and holds only tensors and plain Python
  values (numpy arrays in the data pipeline's buffers are stored as tensors and turned back on
  load; anything else is an error when saving, not a surprise when resuming);
* every checkpoint file is loaded with ``weights_only=True`` and torch's default allow-list; a
  file that needs more is refused with a one-line `UnsafeCheckpointError`;
* before fairseq2 lists the steps to resume from, rank 0 checks the files of the newest one (zip
  checksums and a weights-only load): a damaged step is moved aside to ``step_N.damaged`` (kept,
  reported) and the next newest is checked, so the run resumes from the newest intact step.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from pickle import PickleError, UnpicklingError
from typing import Any, final

import numpy as np
import torch
from fairseq2.checkpoint import CheckpointDir, StandardCheckpointManager
from fairseq2.file_system import FileMode, FileSystem
from fairseq2.io import (
    CorruptFileError,
    DataNotPicklableError,
    TensorFileDumper,
    TensorFileDumpOptions,
    TensorFileLoader,
    TensorFileLoadOptions,
)
from fairseq2.recipe import RecipeContext
from torch import Tensor
from typing_extensions import override

log = logging.getLogger("avsr.training")

PICKLE_PROTOCOL = 2
"""The newest protocol torch's weights-only unpickler reads (protocol 4+ framing is refused)."""
KINDS = ("trainer", "model", "optimizer", "data_reader")
"""The sub-folders of a complete fairseq2 checkpoint ``step_N`` (a model-only step has ``model``)."""
DAMAGED_SUFFIX = ".damaged"
_NDARRAY = "__avsr_ndarray__"
_REFUSAL = re.compile(r"(?i)unsupported (global|operand|class)|is blocked|not an allowed global")


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that holds something other than tensors and plain values; one line."""


class CheckpointStateError(TypeError):
    """State to checkpoint that would not load back safely (a programming error, not bad input)."""


# ======================================================================================= state


def to_plain_state(obj: Any, where: str = "state") -> Any:
    """``obj`` with numpy arrays and scalars replaced by tagged tensors; raises
    `CheckpointStateError` (naming the place) for anything a weights-only load refuses."""
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.asarray(obj)
        if array.dtype.kind not in "biufc":
            raise CheckpointStateError(f"{where}: numpy array of dtype {array.dtype} cannot be checkpointed")
        array = np.array(array, dtype=array.dtype.newbyteorder("="), copy=True, order="C")
        return {_NDARRAY: torch.from_numpy(array), "scalar": isinstance(obj, np.generic)}
    if obj is None or type(obj) in (bool, int, float, str, bytes) or isinstance(obj, Tensor):
        return obj
    if isinstance(obj, dict):
        converted = {k: to_plain_state(v, f"{where}[{k!r}]") for k, v in obj.items()}
        return converted if type(obj) is dict else type(obj)(converted)  # OrderedDict stays one
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(to_plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise CheckpointStateError(
        f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be checkpointed (tensors and plain values only)"
    )


def from_plain_state(obj: Any) -> Any:
    """The inverse of `to_plain_state`."""
    if isinstance(obj, dict):
        if _NDARRAY in obj and isinstance(obj[_NDARRAY], Tensor):
            array = obj[_NDARRAY].numpy()
            return array[()] if obj.get("scalar") else array
        return type(obj)({k: from_plain_state(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain_state(v) for v in obj)
    return obj


def _refusal(exc: BaseException) -> str | None:
    """What torch's weights-only unpickler refused, when that is why ``exc`` was raised."""
    if not isinstance(exc, UnpicklingError):
        return None
    lines = [line.strip() for line in str(exc).splitlines() if _REFUSAL.search(line)]
    return lines[0] if lines else None


def _unsafe(file: Path, reason: str, *, zipped: bool = True) -> UnsafeCheckpointError:
    if (
        "operand 149" in reason and zipped
    ):  # protocol 4+ framing in torch's format: avsr before it made checkpoints safe
        return UnsafeCheckpointError(
            f"{file}: refused: saved with pickle protocol 4 or newer (by an older avsr), which is never unpickled; "
            "export the run's weights with --export-only and train into another --output-dir"
        )
    return UnsafeCheckpointError(
        f"{file}: refused: not a checkpoint that loads safely ({reason}); checkpoints hold only tensors and plain values. "
        "Remove that step folder or train into another --output-dir"
    )


def load_checkpoint_file(
    source: Path | bytes, file: Path, *, mmap: bool = False, map_location: Any = "cpu"
) -> dict[str, Any]:
    """A checkpoint file's state, loaded with ``weights_only=True``.

    Raises `UnsafeCheckpointError` when the unpickler refuses what the file asks for, and
    `CorruptFileError` (fairseq2's) when the file cannot be read as a checkpoint.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*pickle protocol.*")
        try:
            target: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
            state = torch.load(target, map_location=map_location, weights_only=True, mmap=mmap)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
            reason = _refusal(exc)
            if reason is not None:
                zipped = source[:2] == b"PK" if isinstance(source, bytes) else zipfile.is_zipfile(source)
                raise _unsafe(file, reason, zipped=zipped) from None
            raise CorruptFileError(file) from exc
    if not isinstance(state, dict):
        raise _unsafe(file, f"a {type(state).__name__} instead of a state dict")
    return from_plain_state(state)


@final
class SafeTensorFileLoader(TensorFileLoader):
    """fairseq2's tensor-file loader, always weights-only (``options.restrict`` is ignored)."""

    def __init__(self, file_system: FileSystem) -> None:
        self._file_system = file_system

    @override
    def load(self, file: Path, options: TensorFileLoadOptions | None = None) -> dict[str, object]:
        options = options or TensorFileLoadOptions()
        mmap = options.mmap and self._file_system.is_local_path(file)
        source = file if mmap else self._file_system.cat(file)
        return load_checkpoint_file(source, file, mmap=mmap, map_location=options.map_location)


@final
class SafeTensorFileDumper(TensorFileDumper):
    """fairseq2's tensor-file dumper, writing what `SafeTensorFileLoader` loads back."""

    def __init__(self, file_system: FileSystem) -> None:
        self._file_system = file_system

    @override
    def dump(self, data: Mapping[str, object], file: Path, options: TensorFileDumpOptions | None = None) -> None:
        state = to_plain_state(data if isinstance(data, dict) else dict(data), str(file))
        fp = self._file_system.open(file, mode=FileMode.WRITE)
        try:
            torch.save(state, fp, pickle_protocol=PICKLE_PROTOCOL)
        except (RuntimeError, PickleError) as exc:
            raise DataNotPicklableError() from exc
        finally:
            fp.close()


# ======================================================================================= damage


def damage_of(file: Path) -> str | None:
    """Why ``file`` cannot be loaded (truncated, bad checksum, unreadable), or None when it loads.
    A file that loads only by running code raises `UnsafeCheckpointError`."""
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        with open(file, "rb") as f:
            head = f.read(2)
        if head[:1] != b"\x80":  # not a legacy torch file either (a pickle starts with its protocol)
            return (
                "truncated (a zip archive without its end)"
                if head == b"PK"
                else "empty"
                if not head
                else "not a checkpoint file"
            )
        bad = None  # a legacy pickle: the weights-only load below says whether it is safe
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if bad is not None:
        return f"its record {bad} fails its checksum"
    try:
        load_checkpoint_file(file, file, mmap=zipfile.is_zipfile(file))
    except CorruptFileError as exc:
        cause = exc.__cause__
        return (
            f"cannot be loaded ({' '.join(str(cause).split()[:12]) if cause and str(cause) else type(cause).__name__})"
        )
    return None


def step_damage(step_dir: Path) -> str | None:
    """The first problem of a complete checkpoint folder (a missing part, a damaged file), or None."""
    for kind in KINDS:
        files = sorted((step_dir / kind).rglob("*.pt"))
        if not files:
            return f"{step_dir / kind}: missing"
        for file in files:
            damage = damage_of(file)
            if damage is not None:
                return f"{file}: {damage}"
    return None


def _steps(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints (those with trainer state), newest first."""
    found = []
    for path in checkpoint_dir.glob("step_*"):
        m = re.fullmatch(r"step_(\d+)", path.name)
        if m and path.is_dir() and (path / "trainer").is_dir():
            found.append((int(m.group(1)), path))
    return sorted(found, reverse=True)


def set_aside(step_dir: Path) -> Path:
    """Rename a damaged checkpoint folder to ``step_N.damaged`` (``.damaged.2`` ... if taken), and
    its score file likewise (fairseq2 would give a new ``step_N`` the old score)."""
    target = step_dir.with_name(step_dir.name + DAMAGED_SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = step_dir.with_name(f"{step_dir.name}{DAMAGED_SUFFIX}.{n}")
    step_dir.rename(target)
    score = step_dir.parent / "scores" / f"{step_dir.name}.txt"
    if score.is_file():
        score.rename(score.with_name(f"{target.name}.txt"))
    return target


def set_aside_damaged(checkpoint_dir: Path) -> int | None:
    """Check the newest complete checkpoint, moving damaged ones aside until one is intact; returns
    its step (None: none left). Each damaged step is reported on one line."""
    moved_any = False
    for step, step_dir in _steps(checkpoint_dir):
        damage = step_damage(step_dir)
        if damage is None:
            return step
        moved, moved_any = set_aside(step_dir), True
        log.warning("checkpoint of step %d is damaged: %s; moved to %s", step, damage, moved.name)
    if moved_any:
        log.warning("no intact checkpoint left in %s: training starts again from step 0", checkpoint_dir)
    return None


# ======================================================================================= fairseq2


def secure_checkpoints(context: RecipeContext) -> None:
    """Make the run's checkpoint manager load and save with the classes above, and set damaged
    checkpoints aside; call it in ``Recipe.create_task`` before the model is built.

    fairseq2's DI container refuses a second provider for a type ("has already a registered
    provider"), so the loader and dumper cannot be registered in ``Recipe.register``: they are put
    into the manager fairseq2 resolves (fairseq2 is pinned; a manager without these attributes
    stops the run rather than load unsafely).
    """
    resolver = context.resolver
    manager = context.get_checkpoint_manager()
    file_system = resolver.resolve(FileSystem)
    for attr, safe in (
        ("_tensor_file_loader", SafeTensorFileLoader(file_system)),
        ("_tensor_file_dumper", SafeTensorFileDumper(file_system)),
    ):
        if not isinstance(manager, StandardCheckpointManager) or not isinstance(
            getattr(manager, attr, None), (TensorFileLoader, TensorFileDumper)
        ):
            raise RuntimeError(
                f"{type(manager).__name__} has no {attr}: this fairseq2 cannot load checkpoints safely (avsr needs fairseq2 0.8.1)"
            )
        setattr(manager, attr, safe)
    gangs = context.gangs
    if gangs.root.rank == 0:
        checkpoint_dir = resolver.resolve(CheckpointDir).path or context.output_dir / "checkpoints"
        step = set_aside_damaged(checkpoint_dir)
        if step is not None:
            log.info("Checkpoint of step %d checked: intact", step)
    gangs.root.barrier()  # the other ranks list the steps once rank 0 has moved damaged ones


__all__ = [
    "CheckpointStateError",
    "SafeTensorFileDumper",
    "SafeTensorFileLoader",
    "UnsafeCheckpointError",
    "damage_of",
    "from_plain_state",
    "load_checkpoint_file",
    "secure_checkpoints",
    "set_aside_damaged",
    "step_damage",
    "to_plain_state",
]
