"""Reading one input as the model wants it: its audio, and mouth crops from its face, with the
fall-backs of ``av`` mode (a silent video, an audio file or a video without a face is decoded from
what it has, when the model can).

No torch here: ``avsr-decode --workers N`` runs this in worker processes, which then start in a
fraction of a second (`avsr.decoding.batch`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from avsr.decoding.stages import StageTimes, timed
from avsr.media import MediaError, probe, read_audio, read_video
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS

if TYPE_CHECKING:
    from avsr.face import FaceChain, MouthCropConfig

CROP_SIZE = 96
#: what each modality reads from a file
MODALITY_INPUTS: dict[str, tuple[str, ...]] = {"a": ("audio",), "v": ("video",), "av": ("audio", "video")}


def fit_audio(audio: np.ndarray, frames: int) -> np.ndarray:
    """Cut or zero-pad audio to 640 samples per video frame (float32)."""
    wanted = frames * SAMPLES_PER_FRAME
    if audio.shape[0] < wanted:
        return np.pad(audio, (0, wanted - audio.shape[0])).astype(np.float32)
    return audio[:wanted].astype(np.float32)


class TranscribeError(ValueError):
    """This file cannot be transcribed in the requested modality; the message is one line."""


@dataclass
class LoadedInput:
    path: str
    frames: int
    audio: np.ndarray | None = None  # (frames * 640,) float32
    crops: np.ndarray | None = None  # (frames, 96, 96) uint8
    face_found: np.ndarray | None = None  # (frames,) bool: a face detected in the frame (not filled in)
    notes: list[str] = field(default_factory=list)
    modality: str | None = None
    """The modality it is decoded in: the one asked for, or the one left after a fallback (None:
    the one asked for)."""


def face_chain(detect_every: int = 10, crop_config: MouthCropConfig | None = None) -> FaceChain:
    """avsr-prepare's face chain for decoding: dlib with tracking, crops made as the model's
    training crops were (``crop_config``: :attr:`Recognizer.mouth_crop`; default: avsr-prepare's,
    auto_avsr's alignment at 96 px)."""
    from avsr.face import FaceChain, MouthCropConfig

    return FaceChain.dlib(detect_every, crop_config or MouthCropConfig(crop_size=CROP_SIZE))


def mouth_crops(chain: FaceChain, frames: np.ndarray, times: StageTimes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crops (T, S, S) uint8, face_found (T,) bool), timing the landmarks ("face") and the crops
    ("crop") apart; NoFaceError if no frame has a face."""
    with timed(times, "face"):
        landmarks = chain.landmarks(frames)
    with timed(times, "crop"):
        crops = chain.crop(frames, landmarks)
    return crops.crops, np.asarray(crops.detected, dtype=bool)


#: In ``av`` mode, the modality left when one stream is missing (or the face is).
FALLBACK = {"audio": "v", "video": "a"}


def load_input(
    path: str | os.PathLike[str],
    modality: str,
    faces: Callable[[], FaceChain],
    times: StageTimes | None = None,
    *,
    decodable: Sequence[str] = tuple(MODALITY_INPUTS),
) -> LoadedInput:
    """Read what ``modality`` needs from ``path``. ``faces()`` gives the (lazily built) face chain;
    ``times`` collects the seconds spent on media, face and crop.

    In ``av`` mode a file without an audio stream (a silent video), without a video stream (an
    audio file) or without a face anywhere is decoded from the modality that is there, if it is
    one of ``decodable`` (the model's), with a note saying so; otherwise TranscribeError."""
    from avsr.face import FaceAlignmentError, NoFaceError

    p = os.fspath(path)
    try:
        info = probe(p)
    except MediaError as exc:
        raise TranscribeError(str(exc)) from None
    have = {"audio": info.has_audio, "video": info.has_video}
    missing = [x for x in MODALITY_INPUTS[modality] if not have[x]]
    loaded = LoadedInput(p, 0, modality=modality)
    if modality == "av" and len(missing) == 1:
        _fall_back(loaded, f"no {missing[0]} stream", FALLBACK[missing[0]], decodable)
    elif missing:
        hints = {"audio": " (use --modality v for silent videos)", "video": " (use --modality a for audio files)"}
        hint = hints[missing[0]] if len(missing) == 1 and any(have.values()) else ""
        raise TranscribeError(f"{p}: no {' or '.join(missing)} stream{hint}")
    inputs = MODALITY_INPUTS[loaded.modality]
    try:
        with timed(times, "media"):
            if "video" not in inputs:
                audio = read_audio(p, AUDIO_RATE)
                loaded.frames = max(1, len(audio) // SAMPLES_PER_FRAME)
                loaded.audio = fit_audio(audio, loaded.frames)
                return loaded
            clip = read_video(p, with_audio=False)
            loaded.frames = len(clip.frames)
            if "audio" in inputs:
                loaded.audio = fit_audio(read_audio(p, AUDIO_RATE), loaded.frames)
    except MediaError as exc:
        raise TranscribeError(str(exc)) from None
    try:
        loaded.crops, loaded.face_found = mouth_crops(faces(), clip.frames, times)
    except (NoFaceError, FaceAlignmentError) as exc:
        if loaded.modality == "v":
            reason = (
                f"{exc}: cannot lip-read it" if modality == "v" else f"no audio stream, and {exc}: nothing to decode"
            )
            raise TranscribeError(f"{p}: {reason}") from None
        _fall_back(loaded, str(exc), "a", decodable)
        return loaded
    for start, end in _lost_runs(loaded.face_found):
        loaded.notes.append(f"face lost {start / VIDEO_FPS:.2f}-{end / VIDEO_FPS:.2f} s")
    return loaded


def _fall_back(loaded: LoadedInput, reason: str, modality: str, decodable: Sequence[str]) -> None:
    """Decode ``loaded`` from ``modality`` alone (``reason``: what is missing), or refuse it."""
    kept = MODALITY_INPUTS[modality][0]
    if modality not in decodable:
        raise TranscribeError(
            f"{loaded.path}: {reason}: this model cannot decode the {kept} alone (it decodes {', '.join(decodable)})"
        )
    loaded.modality = modality
    loaded.notes.append(f"{reason}: decoded from the {kept} only")


def _lost_runs(found: np.ndarray, min_frames: int = 5) -> list[tuple[int, int]]:
    runs, start = [], None
    for t, ok in enumerate(np.append(found, True)):
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            if t - start >= min_frames:
                runs.append((start, t))
            start = None
    return runs


@dataclass(frozen=True)
class LoadSettings:
    """What a worker needs to read a file as the model wants it (picklable: it crosses to workers)."""

    modality: str
    decodable: tuple[str, ...]
    detect_every: int = 10
    crop_config: object | None = None  # MouthCropConfig of the model (Recognizer.mouth_crop)
    timed: bool = False


_settings: LoadSettings | None = None
_chain: list = []


def start_worker(settings: LoadSettings) -> None:
    """Keep ``settings`` for `load_in_worker` (the worker pool's initializer; also run in-process)."""
    global _settings
    _settings = settings
    _chain.clear()


def _faces():
    if not _chain:
        _chain.append(face_chain(_settings.detect_every, _settings.crop_config))
    return _chain[0]


def load_in_worker(job: tuple[int, str]) -> tuple[int, LoadedInput | str, StageTimes | None]:
    """(index, the input read, or the one line why not, the seconds it took per stage) of ``job``
    = (index, path), with the settings `start_worker` kept."""
    index, path = job
    times = StageTimes() if _settings.timed else None
    try:
        return index, load_input(path, _settings.modality, _faces, times, decodable=_settings.decodable), times
    except TranscribeError as exc:
        return index, str(exc), times


__all__ = [
    "CROP_SIZE",
    "FALLBACK",
    "LoadSettings",
    "LoadedInput",
    "MODALITY_INPUTS",
    "TranscribeError",
    "face_chain",
    "fit_audio",
    "load_in_worker",
    "load_input",
    "mouth_crops",
    "start_worker",
]
