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


#: ``--face``: a face's number (1 = S1) or a box (x, y, width, height pixels) to pin; None: choose per segment
FaceChoice = int | tuple[int, int, int, int] | None


@dataclass
class FaceInput:
    """One face of an input, as the model and the speaker choice need it."""

    label: str  # S1, S2, ...: the tracker's numbering (first seen first, then left to right)
    crops: np.ndarray  # (frames, S, S) uint8 mouth crops (filled where the face was not found)
    found: np.ndarray  # (frames,) bool: the face detected in the frame (not filled in)
    boxes: np.ndarray  # (frames, 4) float32 left, top, right, bottom; NaN where not found
    opening: np.ndarray  # (frames,) float32 inner-lip gap (avsr.decoding.speakers.mouth_opening); NaN likewise


@dataclass
class LoadedInput:
    path: str
    frames: int
    audio: np.ndarray | None = None  # (frames * 640,) float32
    faces: list[FaceInput] = field(default_factory=list)  # empty when the video is not read (audio only)
    sound: np.ndarray | None = None  # (frames,) loudness in dB, to tell the speaker when there are several faces
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


def face_inputs(
    chain: FaceChain,
    frames: np.ndarray,
    times: StageTimes | None = None,
    choice: FaceChoice = None,
    *,
    crops: bool = True,
) -> tuple[list[FaceInput], list[str]]:
    """Every face of ``frames`` (or the one ``choice`` pins) with its mouth crops, timing the
    tracking ("face") and the crops ("crop") apart, and notes on faces that could not be cropped.
    ``crops=False``: the faces only say who speaks (audio-only decoding), no crops are made.
    NoFaceError if no frame has a face; ValueError (one line) if ``choice`` names no face found."""
    from avsr.decoding.speakers import mouth_opening
    from avsr.face import FaceAlignmentError, NoFaceError

    with timed(times, "face"):
        tracks = chain.face_tracks(frames)
    if not tracks:
        raise NoFaceError("no face found in any frame")
    numbered = list(enumerate(tracks, 1))
    if choice is not None:
        numbered = [_pinned(numbered, choice)]
    if not crops:
        empty = np.zeros((len(frames), 0, 0), np.uint8)
        faces = [FaceInput(f"S{n}", empty, t.found, t.boxes, mouth_opening(t.landmarks)) for n, t in numbered]
        return faces, []
    faces, notes, errors = [], [], []
    with timed(times, "crop"):
        for number, track in numbered:
            try:
                crops = chain.crop(frames, track.landmark_list())
            except (NoFaceError, FaceAlignmentError) as exc:
                errors.append(exc)
                notes.append(f"face S{number} skipped: {exc}")
                continue
            faces.append(FaceInput(f"S{number}", crops.crops, track.found, track.boxes, mouth_opening(track.landmarks)))
    if not faces:
        raise errors[0]
    return faces, notes


def _pinned(numbered: list, choice: FaceChoice) -> tuple:
    """The (number, track) ``choice`` names: its number, or the face whose boxes overlap the box most."""
    if isinstance(choice, int):
        if not 1 <= choice <= len(numbered):
            raise ValueError(f"--face {choice}: {len(numbered)} face{'s' if len(numbered) > 1 else ''} found")
        return numbered[choice - 1]
    x, y, w, h = choice
    wanted = np.array([x, y, x + w, y + h], dtype=np.float64)

    def overlap(track) -> float:
        boxes = track.boxes[track.found].astype(np.float64)
        low, high = np.maximum(boxes[:, :2], wanted[:2]), np.minimum(boxes[:, 2:], wanted[2:])
        inter = np.clip(high - low, 0, None).prod(axis=1)
        union = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) + w * h - inter
        return float(np.mean(inter / union))

    best = max(numbered, key=lambda pair: overlap(pair[1]))
    if overlap(best[1]) < 0.1:
        raise ValueError(f"--face-box {x},{y},{w},{h}: no face found there")
    return best


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
    face: FaceChoice = None,
    label_speakers: bool = False,
) -> LoadedInput:
    """Read what ``modality`` needs from ``path``. ``faces()`` gives the (lazily built) face chain;
    ``times`` collects the seconds spent on media, face and crop. Every face is cropped (the
    speaker is chosen per segment later) unless ``face`` pins one. ``label_speakers``: read the
    faces of a video decoded from its audio alone too, to say who speaks (``--speakers all``).

    In ``av`` mode a file without an audio stream (a silent video), without a video stream (an
    audio file) or without a face anywhere is decoded from the modality that is there, if it is
    one of ``decodable`` (the model's), with a note saying so; otherwise TranscribeError."""
    p = os.fspath(path)
    try:
        info = probe(p)
    except MediaError as exc:
        raise TranscribeError(str(exc)) from None
    have = {"audio": info.has_audio, "video": info.has_video}
    missing = [x for x in MODALITY_INPUTS[modality] if not have[x]]
    if missing and not (modality == "av" and len(missing) == 1):
        hints = {"audio": " (use --modality v for silent videos)", "video": " (use --modality a for audio files)"}
        hint = hints[missing[0]] if len(missing) == 1 and any(have.values()) else ""
        raise TranscribeError(f"{p}: no {' or '.join(missing)} stream{hint}")
    inputs = MODALITY_INPUTS[FALLBACK[missing[0]] if missing else modality]
    try:
        with timed(times, "media"):
            see = info.has_video and ("video" in inputs or label_speakers)  # the lips, or who is speaking
            frames = read_video(p, with_audio=False).frames if see else None
            audio = read_audio(p, AUDIO_RATE) if "audio" in inputs else None
    except MediaError as exc:
        raise TranscribeError(str(exc)) from None
    hear = (lambda: read_audio(p, AUDIO_RATE)) if info.has_audio else None
    return loaded_from_media(
        p,
        modality,
        frames,
        audio,
        faces,
        times,
        decodable=decodable,
        face=face,
        label_speakers=label_speakers,
        hear=hear,
    )


def loaded_from_media(
    name: str,
    modality: str,
    frames: np.ndarray | None,
    audio: np.ndarray | None,
    faces: Callable[[], FaceChain],
    times: StageTimes | None = None,
    *,
    decodable: Sequence[str] = tuple(MODALITY_INPUTS),
    face: FaceChoice = None,
    label_speakers: bool = False,
    hear: Callable[[], np.ndarray] | None = None,
) -> LoadedInput:
    """The input as the model wants it from media already read (a file's, or a piece of a live
    source): ``frames`` (T, H, W, 3) uint8 RGB at 25 fps or None, ``audio`` (S,) float32 16 kHz or
    None. The fall-backs and the options are those of :func:`load_input`; ``hear()`` gives the
    audio when it was not read (lip reading) and several faces need the sound to tell the speaker."""
    from avsr.face import FaceAlignmentError, NoFaceError

    loaded = LoadedInput(name, 0, modality=modality)
    given = {"audio": audio is not None, "video": frames is not None}
    missing = [x for x in MODALITY_INPUTS[modality] if not given[x]]
    if modality == "av" and len(missing) == 1:
        _fall_back(loaded, f"no {missing[0]} stream", FALLBACK[missing[0]], decodable)
    elif missing:
        raise TranscribeError(f"{name}: no {' or '.join(missing)} stream")
    inputs = MODALITY_INPUTS[loaded.modality]
    lips = "video" in inputs
    loaded.frames = len(frames) if lips else max(1, len(audio) // SAMPLES_PER_FRAME)
    if "audio" in inputs:
        loaded.audio = fit_audio(audio, loaded.frames)
    if frames is None or not (lips or label_speakers):
        return loaded
    try:
        loaded.faces, notes = face_inputs(faces(), frames, times, face, crops=lips)
        loaded.notes += notes
    except ValueError as exc:  # no face, or a pinned face that is not there
        if not lips:
            loaded.notes.append(f"no speaker labels: {exc}")
            return loaded
        if isinstance(exc, (NoFaceError, FaceAlignmentError)):
            return _faceless(loaded, modality, exc, decodable)
        raise TranscribeError(f"{name}: {exc}") from None
    if not lips:  # the faces only say who speaks: frame for frame with the audio
        loaded.faces = [_fitted(f, loaded.frames) for f in loaded.faces]
    if len(loaded.faces) > 1:
        from avsr.decoding.speakers import loudness
        from avsr.face.tracks import median_box

        where = "; ".join(f"{f.label} at {','.join(map(str, median_box(f.boxes)))}" for f in loaded.faces)
        loaded.notes.append(f"{len(loaded.faces)} faces ({where}): the one speaking is chosen per segment")
        if audio is None and hear is not None:
            try:
                with timed(times, "media"):
                    audio = hear()
            except MediaError as exc:
                raise TranscribeError(str(exc)) from None
        if audio is not None:  # the sound tells who speaks
            loaded.sound = loudness(audio, loaded.frames)
    for face_input in loaded.faces:
        for start, end in _lost_runs(face_input.found):
            where = f" ({face_input.label})" if len(loaded.faces) > 1 else ""
            loaded.notes.append(f"face lost{where} {start / VIDEO_FPS:.2f}-{end / VIDEO_FPS:.2f} s")
    return loaded


def _fitted(face: FaceInput, frames: int) -> FaceInput:
    """``face`` cut or padded (as unseen) to ``frames`` frames, without its crops (not read)."""
    have = len(face.found)

    def fit(values: np.ndarray, fill) -> np.ndarray:
        if have >= frames:
            return values[:frames]
        return np.concatenate([values, np.full((frames - have, *values.shape[1:]), fill, values.dtype)])

    empty = np.zeros((frames, 0, 0), np.uint8)
    return FaceInput(face.label, empty, fit(face.found, False), fit(face.boxes, np.nan), fit(face.opening, np.nan))


def _faceless(loaded: LoadedInput, modality: str, exc: ValueError, decodable: Sequence[str]) -> LoadedInput:
    """A video in which no face could be cropped: decoded from its audio, when it has some and the model can."""
    if loaded.modality == "v":
        reason = f"{exc}: cannot lip-read it" if modality == "v" else f"no audio stream, and {exc}: nothing to decode"
        raise TranscribeError(f"{loaded.path}: {reason}") from None
    _fall_back(loaded, str(exc), "a", decodable)
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
    face: FaceChoice = None  # --face / --face-box
    label_speakers: bool = False  # --speakers all


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
        return (
            index,
            load_input(
                path,
                _settings.modality,
                _faces,
                times,
                decodable=_settings.decodable,
                face=_settings.face,
                label_speakers=_settings.label_speakers,
            ),
            times,
        )
    except TranscribeError as exc:
        return index, str(exc), times


__all__ = [
    "CROP_SIZE",
    "FALLBACK",
    "FaceChoice",
    "FaceInput",
    "LoadSettings",
    "LoadedInput",
    "MODALITY_INPUTS",
    "TranscribeError",
    "face_chain",
    "face_inputs",
    "fit_audio",
    "load_in_worker",
    "load_input",
    "loaded_from_media",
    "mouth_crops",
    "start_worker",
]
